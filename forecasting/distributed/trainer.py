r"""The project's :class:`~sciml.forecasting.train.Trainer` on latitude x longitude tiles.

:class:`DistributedTrainHooks` gives the trainer its tiled model, data, loss and gradient sync; :class:`TiledTrainer`
overrides the rest of what touches the grid or the batch:

* the model is built with :class:`.ops.DistributedSphereOps` and datasets read only this rank's tile (the base
  trainer asks ``hooks.sphere_ops()`` and ``hooks.tile()``);
* a step's global batch is cut to this batch rank's rows (:meth:`DistributedTrainHooks.batch_rows`, which the
  base trainer's batch loader asks);
* noise is drawn for the global batch from the per-member streams and mapped to the rows and tile
  (:class:`.noise.TiledEnsembleNoise`), so every rank sees the serial run's noise;
* validation metrics are reduced over the mesh: ensemble mean and spread from member sums over the ensemble
  group, area means from tile partial sums over the spatial group.

Everything else (curriculum, schedules, clipping, NaN policy, checkpoints written by rank 0, exact resume) is the
serial trainer's code.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist

from sciml.errors import UsageError
from sciml.forecasting.train import Trainer

from .hooks import DistributedTrainHooks
from .layout import split_bounds
from .noise import TiledEnsembleNoise

if TYPE_CHECKING:
    from sciml.forecasting.noise import EnsembleNoise


class TiledTrainer(Trainer):
    """:class:`Trainer` whose model, data and noise live on this rank's tile (see the module docstring)."""

    def __init__(
        self,
        cfg,
        out: str | Path,
        hooks: DistributedTrainHooks,
        resume: str | Path | None = None,
        progress=None,
    ) -> None:
        if not isinstance(hooks, DistributedTrainHooks):
            raise UsageError("TiledTrainer needs DistributedTrainHooks (it reads the parallel context from them)")
        super().__init__(cfg, out, hooks=hooks, resume=resume, progress=progress)

    # ------------------------------------------------------------------ grid-dependent pieces
    # The model (``hooks.sphere_ops()``) and the datasets (``hooks.tile()``) are already tiled by the base class.
    @property
    def ctx(self):
        return self.hooks.ctx

    def _enter_stage(self, index: int):
        st = super()._enter_stage(index)
        if st.noise is not None:
            st.noise = TiledEnsembleNoise.from_serial(st.noise, self.ctx, st.cfg.batch_size)
        return st

    # ------------------------------------------------------------------ validation
    def validation_noise(self, noise: EnsembleNoise, windows: int) -> TiledEnsembleNoise:
        # every batch rank holds all validation windows (rows=slice(None)); the members are this rank's
        return TiledEnsembleNoise.from_serial(noise, self.ctx, windows, rows=slice(None))

    def _sum(self, t: torch.Tensor, group) -> torch.Tensor:
        if group.size > 1:
            t = t.contiguous().clone()
            dist.all_reduce(t, group=group.handle)
        return t

    @torch.no_grad()
    def validate(self) -> dict[str, float] | None:
        r"""The serial validation metrics, reduced over the mesh.

        Every batch rank evaluates all validation windows (their number need not divide by the batch ranks). With
        :math:`S_1 = \sum_e x_e`, :math:`S_2 = \sum_e x_e^2` summed over the ensemble group, the ensemble mean is
        :math:`S_1/E` and the unbiased variance :math:`(S_2 - S_1^2/E)/(E-1)`; area means are tile partial sums of
        :math:`q\,f` added over the spatial group.
        """
        from sciml.forecasting.losses import FairCRPS, GridCRPSLoss
        from sciml.forecasting.sphere import quadrature_weights

        from .crps import DistributedGridCRPSLoss

        rolled = self.validation_rollout()
        if rolled is None:
            return None
        batch, states = rolled
        ctx = self.ctx
        # all batch ranks hold the same windows here: a mesh without batch ranks scores them
        one_replica = dataclasses.replace(ctx, groups={**ctx.groups, "batch": _solo(ctx.batch)})
        crps_loss = DistributedGridCRPSLoss(GridCRPSLoss(self.mc.nlat, self.mc.nlon, FairCRPS()), one_replica)
        crps_loss = crps_loss.to(self.runtime.device)
        lat = slice(*split_bounds(self.mc.nlat, ctx.mesh.h, ctx.coords.h))
        q = quadrature_weights(self.mc.nlat, self.mc.nlon).float()[lat].to(self.runtime.device)
        members = self.cfg.validation.members
        crps, rmse, spread = [], [], []
        for k, fc in enumerate(states):
            y = batch["target"][:, k]
            crps.append(crps_loss.per_channel(fc, y).mean())
            s1 = self._sum(fc.sum(0), ctx.ensemble)
            s2 = self._sum((fc * fc).sum(0), ctx.ensemble)
            mean = s1 / members
            var = (s2 - s1 * s1 / members) / (members - 1)
            mse = self._sum(((mean - y) ** 2 * q).sum((-2, -1)), ctx.spatial)
            v = self._sum((var * q).sum((-2, -1)), ctx.spatial)
            rmse.append(mse.mean().sqrt())
            spread.append(v.mean().sqrt())
        vals = torch.stack([crps[-1], torch.stack(crps).mean(), rmse[-1], spread[-1]]).double()
        return self.validation_record(vals)


def _solo(group):
    """A stand-in one-member group (this rank alone) for metrics that every batch rank computes identically."""
    from .context import CommGroup

    return CommGroup(group.name, (group.ranks[group.rank],), group.handle, 0, group.device)
