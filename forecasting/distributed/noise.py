r"""Ensemble noise on a tile: the same random fields as the serial run, whatever the layout.

A member's stream depends only on its *global* member index (``EnsembleNoise`` seeds one generator per member),
and the spectral state is drawn for the *global* batch on every rank and sliced to the local batch rows, so the
noise of sample ``b``, member ``e`` never depends on the spatial, ensemble or batch rank that uses it. The spectral
state is small (:math:`B\,C\,L^2`); only the grid field is distributed: each rank keeps its degrees and orders and
applies ``torch_harmonics.distributed.DistributedInverseRealSHT``, which returns its latitude x longitude tile.
"""

from __future__ import annotations

import torch
import torch_harmonics.distributed as thd
from sciml.forecasting.noise import DiffusionNoiseS2, EnsembleNoise

from .context import ParallelContext
from .ops import local_degree_slice, local_order_slice


class TiledEnsembleNoise:
    """:class:`EnsembleNoise` for this rank's members, batch rows and tile.

    Parameters
    ----------
    noise
        The serial noise process (its grid, spectrum and AR coefficient).
    members
        Global ensemble size; split evenly over the ensemble group.
    global_batch
        Global batch size; split evenly over the batch group.
    seed, centered
        As for :class:`EnsembleNoise`.
    """

    def __init__(
        self,
        noise: DiffusionNoiseS2,
        members: int,
        global_batch: int,
        seed: int,
        ctx: ParallelContext,
        centered: bool = False,
    ) -> None:
        self.member_indices = ctx.member_indices(members)
        self.rows = ctx.batch_rows(global_batch)
        self.global_batch = global_batch
        self.ensemble = EnsembleNoise(noise, members, seed, centered, member_indices=self.member_indices)
        self.lm = (local_degree_slice(noise.lmax, ctx), local_order_slice(noise.lmax, ctx))
        self.isht = thd.DistributedInverseRealSHT(
            noise.nlat, noise.nlon, lmax=noise.lmax, mmax=noise.lmax, grid=noise.isht.grid, norm="ortho"
        )

    def initial(self) -> torch.Tensor:
        """Stationary spectral state of the local members for the global batch, ``[E_r, B, C, L, L]``."""
        return self.ensemble.initial(self.global_batch)

    def step(self, state: torch.Tensor) -> torch.Tensor:
        """AR(1) update (global batch, local members)."""
        return self.ensemble.step(state)

    def to_grid(self, state: torch.Tensor) -> torch.Tensor:
        """Local rows and tile of the grid fields, ``[E_r, B_r, C, h, w]`` (float32)."""
        lsl, msl = self.lm
        return self.isht(state[:, self.rows, :, lsl, msl].contiguous())
