r"""Ensemble noise on a tile: the same random fields as the serial run, whatever the layout.

Every rank advances the generators of *all* members for the *global* batch, exactly as the serial run does (the
spectral states are small: :math:`E\,B\,C\,L^2` normal draws per step), and maps only its members, batch rows
and latitude x longitude tile to the grid: its degrees and orders go through
``torch_harmonics.distributed.DistributedInverseRealSHT``, which returns its tile. So the noise of sample ``b``,
member ``e`` never depends on the spatial, ensemble or batch rank that uses it, and the generator states a
checkpoint holds (all members, as serially) resume a run at any other layout. Training and inference use this one
class (:class:`sciml.forecasting.noise.NoiseStreams` is the interface both loops call).
"""

from __future__ import annotations

import torch
import torch_harmonics.distributed as thd

from sciml.forecasting.noise import DiffusionNoiseS2, EnsembleNoise

from .context import ParallelContext
from .ops import local_degree_slice, local_order_slice


class TiledEnsembleNoise:
    """:class:`EnsembleNoise` of all members, grid fields of this rank's members, batch rows and tile.

    Parameters
    ----------
    noise
        The serial noise process (its grid, spectrum and AR coefficient).
    members
        Global ensemble size; this rank maps its share (``ctx.member_indices``) to the grid.
    global_batch
        Global batch size: every rank draws the spectral state of the whole batch.
    seed, centered
        As for :class:`EnsembleNoise`.
    rows
        Batch rows this rank maps to the grid; default its batch rank's share of ``global_batch``
        (``slice(None)`` when every batch rank holds every sample, as for validation windows).
    device
        Where the grid fields are made (the spectral states stay with the CPU generators).
    """

    def __init__(
        self,
        noise: DiffusionNoiseS2,
        members: int,
        global_batch: int,
        seed: int,
        ctx: ParallelContext,
        centered: bool = False,
        rows: slice | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        self.full = EnsembleNoise(noise, members, seed, centered)
        self.member_indices = ctx.member_indices(members)
        self.global_batch = global_batch
        self.rows = ctx.batch_rows(global_batch) if rows is None else rows
        self.lm = (local_degree_slice(noise.lmax, ctx), local_order_slice(noise.lmax, ctx))
        self.device = torch.device(device)
        self.isht = thd.DistributedInverseRealSHT(
            noise.nlat, noise.nlon, lmax=noise.lmax, mmax=noise.lmax, grid=noise.isht.grid, norm="ortho"
        ).to(self.device)

    @classmethod
    def from_serial(
        cls, serial: EnsembleNoise, ctx: ParallelContext, global_batch: int, rows: slice | None = None
    ) -> TiledEnsembleNoise:
        """The tiled twin of ``serial`` (same process, members, seed and antithetic pairing)."""
        return cls(serial.noise, serial.members, global_batch, serial.seed, ctx, serial.centered, rows, ctx.device)

    @property
    def noise(self) -> DiffusionNoiseS2:
        return self.full.noise

    @property
    def generators(self) -> list[torch.Generator]:
        """The generators of all members, in member order (what a checkpoint stores, whatever the layout)."""
        return self.full.generators

    def initial(self, batch: int | None = None) -> torch.Tensor:
        """Stationary spectral state of all members for the global batch, ``[E, B, C, L, L]``.

        ``batch`` (the caller's local batch) is not used: the global batch is always drawn, so that a sample's
        noise does not depend on the batch split.
        """
        return self.full.initial(self.global_batch)

    def step(self, state: torch.Tensor) -> torch.Tensor:
        """AR(1) update of every member (global batch)."""
        return self.full.step(state)

    def to_grid(self, state: torch.Tensor) -> torch.Tensor:
        """This rank's members, rows and tile of the grid fields, ``[E_r, B_r, C, h, w]`` (float32)."""
        lsl, msl = self.lm
        local = state[self.member_indices][:, self.rows, :, lsl, msl]
        return self.isht(local.to(self.device).contiguous())
