r"""Distributed twins of the model's spherical primitives, handed out through the model's ``SphereOps`` interface.

Every layer comes from ``torch_harmonics.distributed`` (SHT/ISHT, DISCO with polar halo exchange, bilinear
resampling); the model's blocks do not know whether they run on a tile. The one layer of ours with a spectral
weight, the Driscoll-Healy convolution

.. math::

    \hat y_{o,lm} = \sum_i w_{iol}\, \hat x_{i,lm},

is local in :math:`(l, m)`: after the distributed SHT a rank holds degrees :math:`l \in [l_0, l_0 + L_r)` (split
over the ``h`` group) and orders split over the ``w`` group, so it multiplies by its slice of the *replicated*
weight. The weight gradient a rank computes is zero outside its slice; summing over the spatial group
(:func:`.comm.sync_gradients`) therefore assembles the full gradient, and checkpoints hold the full weight.

Construction needs an active :class:`.context.ParallelContext` (torch-harmonics reads its groups at build time).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch_harmonics.distributed as thd
from torch.distributed import nn as dist_nn

from sciml.forecasting.models.layers import DiscoSpec, SpectralConvDH, no_autocast

from .context import ParallelContext
from .layout import split_bounds


class DistributedSpectralConvDH(SpectralConvDH):
    """:class:`SpectralConvDH` on a tile: same parameter (full ``[in, out, lmax, 2]``), local degree slice used."""

    def __init__(self, sht: nn.Module, isht: nn.Module, in_channels: int, out_channels: int) -> None:
        super().__init__(sht, isht, in_channels, out_channels)
        # torch-harmonics' distributed transforms keep their local degree range as ints
        self.l_start = int(isht.lmax_offset)  # type: ignore[arg-type]
        self.l_stop = self.l_start + int(isht.lmax_local)  # type: ignore[arg-type]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        with no_autocast(x):
            coeffs = self.sht(x.float())
            w = torch.view_as_complex(self.weight.float())[:, :, self.l_start : self.l_stop]
            coeffs = torch.einsum("bilm,iol->bolm", coeffs, w)
            y = self.isht(coeffs)
        return y.to(dtype)


class DistributedSphereOps:
    """``SphereOps`` whose layers take and return this rank's latitude x longitude tile.

    Parameters
    ----------
    ctx
        The active parallel context (its ``h``/``w`` groups were given to ``torch_harmonics.distributed.init``).
    polar_mode
        DISCO latitude coupling: ``"halo-exchange"`` (borrow neighbour rows, the default) or ``"reduce-scatter"``.
    """

    def __init__(self, ctx: ParallelContext, polar_mode: str = "halo-exchange") -> None:
        self.ctx = ctx
        self.polar_mode = polar_mode

    def local_shape(self, shape: tuple[int, int]) -> tuple[int, int]:
        """This rank's tile shape of a global ``(nlat, nlon)`` grid."""
        return self.ctx.tile(*shape).shape

    def tile_slices(self, shape: tuple[int, int]) -> tuple[slice, slice]:
        """This rank's latitude and longitude index ranges of a global ``(nlat, nlon)`` grid."""
        lat, lon = self.ctx.tile(*shape).slices
        return lat, lon

    def grid_sum(self, partial: torch.Tensor) -> torch.Tensor:
        """Sum of the tiles' partial sums over the spatial group; its backward all-reduces the gradient too, since
        every tile's output depends on the total."""
        group = self.ctx.spatial
        return partial if group.size == 1 else dist_nn.all_reduce(partial, group=group.handle)

    def sht(self, nlat: int, nlon: int, lmax: int, mmax: int, grid: str) -> nn.Module:
        return thd.DistributedRealSHT(nlat, nlon, lmax=lmax, mmax=mmax, grid=grid, norm="ortho").float()

    def isht(self, nlat: int, nlon: int, lmax: int, mmax: int, grid: str) -> nn.Module:
        return thd.DistributedInverseRealSHT(nlat, nlon, lmax=lmax, mmax=mmax, grid=grid, norm="ortho").float()

    def spectral_conv(self, sht: nn.Module, isht: nn.Module, in_channels: int, out_channels: int) -> nn.Module:
        return DistributedSpectralConvDH(sht, isht, in_channels, out_channels)

    def disco(
        self,
        in_channels: int,
        out_channels: int,
        in_shape: tuple[int, int],
        out_shape: tuple[int, int],
        spec: DiscoSpec,
    ) -> nn.Module:
        return thd.DistributedDiscreteContinuousConvS2(
            in_channels,
            out_channels,
            in_shape=in_shape,
            out_shape=out_shape,
            **spec.kwargs(),
            polar_mode=self.polar_mode,
        )

    def resample(self, in_shape: tuple[int, int], out_shape: tuple[int, int], grid_in: str, grid_out: str) -> nn.Module:
        return thd.DistributedResampleS2(*in_shape, *out_shape, grid_in=grid_in, grid_out=grid_out, mode="bilinear")


def local_degree_slice(lmax: int, ctx: ParallelContext) -> slice:
    """Degrees ``l`` this rank holds after a distributed SHT with ``lmax`` degrees (split over the h group)."""
    return slice(*split_bounds(lmax, ctx.mesh.h, ctx.coords.h))


def local_order_slice(mmax: int, ctx: ParallelContext) -> slice:
    """Orders ``m`` this rank holds after a distributed SHT with ``mmax`` orders (split over the w group)."""
    return slice(*split_bounds(mmax, ctx.mesh.w, ctx.coords.w))
