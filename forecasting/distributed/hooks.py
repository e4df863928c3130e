"""The trainer's rank-dependent choices (:class:`sciml.forecasting.train.TrainHooks`) for a parallel context.

The training loop never branches on the rank; it asks its hooks. This subclass answers for a
``batch x ensemble x h x w`` mesh: rank 0 writes, members and batch rows are split evenly, the loss becomes its
ensemble-parallel tiled twin, gradients are synchronised by :func:`.comm.sync_gradients`, scalars are averaged
over the world. It also provides what a tiled run needs beyond that interface: the distributed ``SphereOps`` for
the model, this rank's data tile and its share of each global batch.

Use them with :class:`.trainer.TiledTrainer` (what ``sciml forecast train`` does under a launcher). The plain
``Trainer`` with these hooks trains ensemble-parallel correctly, but its checkpoints hold only rank 0's member
noise streams, so such a run cannot resume at another ensemble split.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch_harmonics.distributed as thd
from sciml.forecasting.train import TrainHooks

from .comm import sync_gradients
from .context import ParallelContext
from .crps import distributed_loss
from .layout import split_bounds
from .ops import DistributedSphereOps, local_degree_slice, local_order_slice


class DistributedTrainHooks(TrainHooks):
    """:class:`TrainHooks` of one rank of ``ctx``'s mesh."""

    def __init__(self, ctx: ParallelContext) -> None:
        self.ctx = ctx
        self.rank = ctx.rank
        self.world_size = ctx.world_size
        self._isht: dict[tuple, torch.nn.Module] = {}

    def is_writer(self) -> bool:
        return self.ctx.rank == 0

    def member_indices(self, members: int) -> list[int]:
        """Global indices of this ensemble rank's members: a contiguous block of ``members / ensemble`` ranks."""
        return self.ctx.member_indices(members)

    def batch_rows(self, indices: list[int]) -> list[int]:
        """This batch rank's contiguous share of a global batch (sample indices in global order)."""
        return list(indices[self.ctx.batch_rows(len(indices))])

    def sync_gradients(self, model: torch.nn.Module) -> None:
        sync_gradients(model.parameters(), self.ctx)

    def reduce_mean(self, values: torch.Tensor) -> torch.Tensor:
        """World average (the losses of :mod:`.crps` are already global, so their average is themselves)."""
        if self.ctx.world_size == 1:
            return values
        out = values.detach().to(self.ctx.device, copy=True)
        dist.all_reduce(out, group=self.ctx.group("world").handle)
        return (out / self.ctx.world_size).to(values.device)

    def barrier(self) -> None:
        if self.ctx.world_size > 1:
            dist.barrier(group=self.ctx.group("world").handle)

    def make_loss(self, loss: torch.nn.Module) -> torch.nn.Module:
        return distributed_loss(loss, self.ctx)

    def sphere_ops(self) -> DistributedSphereOps:
        """``SphereOps`` for building the model on this rank's tiles."""
        return DistributedSphereOps(self.ctx)

    def noise_to_grid(self, noise, state: torch.Tensor, rows: slice | None = None) -> torch.Tensor:
        """Grid noise of this rank's batch rows and tile from the spectral state of the *global* batch.

        ``noise`` is the trainer's ``EnsembleNoise`` built with :meth:`member_indices` (so its streams are the
        serial run's), ``state`` its ``[E_r, B, C, L, L]`` state for the global batch ``B``; returns
        ``[E_r, B_r, C, h, w]`` through ``torch_harmonics.distributed.DistributedInverseRealSHT``. ``rows``
        overrides the batch rows (default: this batch rank's share of ``B``).
        """
        proc = noise.noise
        key = (proc.nlat, proc.nlon, proc.lmax, proc.isht.grid)
        if key not in self._isht:
            self._isht[key] = thd.DistributedInverseRealSHT(
                proc.nlat, proc.nlon, lmax=proc.lmax, mmax=proc.lmax, grid=proc.isht.grid, norm="ortho"
            ).to(state.device)
        if rows is None:
            rows = slice(*split_bounds(state.shape[1], self.ctx.mesh.batch, self.ctx.coords.batch))
        lsl, msl = local_degree_slice(proc.lmax, self.ctx), local_order_slice(proc.lmax, self.ctx)
        return self._isht[key](state[:, rows, :, lsl, msl].contiguous())

    def tile(self, nlat: int, nlon: int):
        """This rank's tile as the data layer's ``Tile`` (``ForecastDataset(cfg, tile=...)`` reads only it)."""
        from sciml.forecasting.data.dataset import Tile

        c = self.ctx.coords
        return Tile.from_split(nlat, nlon, self.ctx.mesh.h, self.ctx.mesh.w, c.h, c.w)
