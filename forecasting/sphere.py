"""Grid geometry shared by the model, the losses and the metrics: latitudes, quadrature weights, bandlimits, and
the one convention for spherical-harmonic coefficients of scalar channels and wind pairs (:class:`ChannelSHT`).

The canonical I/O grid is equiangular with both poles, latitude strictly descending from 90 to -90 degrees and
longitude ascending from 0; the internal model grid is Legendre-Gauss. Latitude nodes and quadrature rules come
from ``torch_harmonics.quadrature`` (Clenshaw-Curtis for equiangular, Gauss for Legendre-Gauss), so that every
integral here agrees with the spherical-harmonic transforms of torch-harmonics.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn as nn
import torch_harmonics as th
from torch_harmonics.quadrature import precompute_latitudes

from sciml.errors import UsageError

#: torch-harmonics' names of the two quadrature grids. The data layer's :class:`~sciml.forecasting.data.Grid`
#: (kinds ``equiangular``, ``gaussian``) maps onto these through ``Grid.th_grid``; everything here takes these names.
QuadratureGrid = Literal["equiangular", "legendre-gauss"]
GRIDS: tuple[str, ...] = ("equiangular", "legendre-gauss")


def check_grid(grid: str) -> str:
    """Return ``grid`` if it is a supported grid name, else raise :class:`UsageError`."""
    if grid not in GRIDS:
        raise UsageError(f"unknown grid {grid!r}; use one of {list(GRIDS)}")
    return grid


def latitudes_deg(nlat: int, grid: str = "equiangular") -> torch.Tensor:
    """Latitudes in degrees, north to south (float64, shape ``[nlat]``)."""
    colat, _ = precompute_latitudes(nlat, grid=check_grid(grid))
    return 90.0 - torch.rad2deg(colat)


def longitudes_deg(nlon: int) -> torch.Tensor:
    """Longitudes ``0, 360/nlon, ...`` in degrees (float64, shape ``[nlon]``)."""
    return torch.arange(nlon, dtype=torch.float64) * (360.0 / nlon)


def quadrature_weights(nlat: int, nlon: int, grid: str = "equiangular", normalize: bool = True) -> torch.Tensor:
    r"""Per-point quadrature weights ``q`` of shape ``[nlat, 1]`` (broadcast over longitude).

    .. math::

        \int_{S^2} f\,d\Omega \approx \sum_{k,j} f(\theta_k, \lambda_j)\, w_k\, \frac{2\pi}{n_\mathrm{lon}},

    with :math:`w_k` the latitude rule in :math:`\cos\theta` (Clenshaw-Curtis or Gauss). With ``normalize`` the
    weights are divided by :math:`4\pi`, so that :math:`\sum_{k,j} q_{k} = 1` and the sum is a spherical mean.
    """
    if nlat < 2 or nlon < 1:
        raise UsageError(f"grid {nlat}x{nlon} is too small (need nlat >= 2, nlon >= 1)")
    _, w = precompute_latitudes(nlat, grid=check_grid(grid))
    q = w * (2.0 * math.pi / nlon)
    if normalize:
        q = q / (4.0 * math.pi)
    return q.to(torch.float64).reshape(nlat, 1)


def exact_lmax(nlat: int, grid: str = "equiangular") -> int:
    """Number of degrees ``l = 0..lmax-1`` that the forward SHT on this grid resolves exactly.

    Clenshaw-Curtis on ``nlat`` equiangular nodes integrates polynomials in :math:`\\cos\\theta` up to degree
    ``nlat - 1`` exactly, so products of two harmonics of degree below ``(nlat + 1) // 2`` are integrated exactly;
    Gauss on ``nlat`` nodes integrates degree ``2 nlat - 1``, hence ``nlat`` degrees.
    """
    check_grid(grid)
    return (nlat + 1) // 2 if grid == "equiangular" else nlat


def band_limit(nlat: int, nlon: int, grid: str = "equiangular", lmax: int | None = None, vector: bool = False) -> int:
    """The band ``lmax`` (degrees ``0..lmax-1``) of a transform on an ``nlat x nlon`` grid.

    Defaults to :func:`exact_lmax`; must lie in ``[1, nlon/2]`` (``[2, nlon/2]`` for a vector transform: a vector
    field has no degree-0 harmonic, so the band must reach ``l = 1``).
    """
    lmax = exact_lmax(nlat, check_grid(grid)) if lmax is None else int(lmax)
    low = 2 if vector else 1
    if not low <= lmax <= nlon // 2:
        raise UsageError(f"lmax={lmax} must be in [{low}, nlon/2={nlon // 2}]")
    return lmax


def tangent_components(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    r"""Eastward ``u`` and northward ``v`` wind ``[..., H, W]`` -> torch-harmonics' vector input ``[..., 2, H, W]``.

    torch-harmonics' vector transforms take :math:`(u_\theta, u_\phi)` with colatitude :math:`\theta` pointing
    south, so :math:`(u_\theta, u_\phi) = (-v, u)`.
    """
    if u.shape != v.shape:
        raise UsageError(f"u and v must have the same shape, got {tuple(u.shape)} and {tuple(v.shape)}")
    return torch.stack([-v, u], dim=-3)


def check_vector_pairs(pairs: Sequence[Sequence[int]]) -> tuple[tuple[int, int], ...]:
    """Validated ``((u, v), ...)`` channel-index pairs: non-negative, and no channel in two pairs."""
    out = tuple((int(u), int(v)) for u, v in pairs)
    flat = [c for pair in out for c in pair]
    if any(c < 0 for c in flat) or len(set(flat)) != len(flat):
        raise UsageError(f"vector pairs must be distinct non-negative channel indices, got {list(out)}")
    return out


class ChannelSHT(nn.Module):
    r"""Orthonormal spherical-harmonic coefficients of every channel, wind components as one vector field.

    A scalar channel gives :math:`f_{lm} = \mathrm{SHT}(f)_{lm}`. A pair ``(u, v)`` of eastward and northward
    components is transformed as the tangent vector field :math:`(u_\theta, u_\phi) = (-v, u)` (colatitude
    points south),

    .. math::

        \mathbf u = \sum_{lm} S_{lm} \nabla Y_{lm} + T_{lm}\, \hat r \times \nabla Y_{lm}
                   = \nabla\chi + \hat r \times \nabla\psi,\qquad
        \int |\mathbf u|^2\, d\Omega = \sum_{lm} c_m\, l(l+1)\, (|S_{lm}|^2 + |T_{lm}|^2)

    (torch-harmonics' ``RealVectorSHT``, ``norm="ortho"``, unit sphere: :math:`S, T` are the orthonormal
    coefficients of the velocity potential :math:`\chi` and the streamfunction :math:`\psi`; tested on
    closed-form flows), and the spheroidal (divergent) coefficients :math:`S_{lm}` take the place of
    ``u``, the toroidal (rotational) :math:`T_{lm}` that of ``v``. Scored as two scalars, ``u`` and ``v`` share their
    planetary-scale modes and spread a spurious large-scale divergence or a tilted rotation over several degrees
    of both; as :math:`S, T` those are single coefficients with their own (small) typical size.

    ``sht`` and ``vsht`` are torch-harmonics transforms (serial or distributed, same grid and band); ``vsht`` is
    only needed when there are pairs.
    """

    def __init__(self, sht: nn.Module, vsht: nn.Module | None = None, pairs: Sequence[Sequence[int]] = ()) -> None:
        super().__init__()
        self.pairs = check_vector_pairs(pairs)
        if self.pairs and vsht is None:
            raise UsageError("vector pairs need a vector SHT")
        self.sht = sht
        self.vsht = vsht if self.pairs else None

    @classmethod
    def serial(
        cls,
        nlat: int,
        nlon: int,
        grid: str = "equiangular",
        lmax: int | None = None,
        pairs: Sequence[Sequence[int]] = (),
        dtype: torch.dtype = torch.float32,
    ) -> ChannelSHT:
        """The serial transform on an ``nlat x nlon`` grid, band :func:`band_limit` (vector SHT only for pairs)."""
        lmax = band_limit(nlat, nlon, grid, lmax, vector=bool(pairs))
        sht = th.RealSHT(nlat, nlon, lmax=lmax, mmax=lmax, grid=grid, norm="ortho").to(dtype)
        vsht = th.RealVectorSHT(nlat, nlon, lmax=lmax, mmax=lmax, grid=grid, norm="ortho").to(dtype) if pairs else None
        return cls(sht, vsht, pairs)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        """Complex coefficients of ``f`` ``[..., C, H, W]`` -> ``[..., C, L, M]``."""
        if not self.pairs:
            return self.sht(f)
        n = f.shape[-3]
        u = [p[0] for p in self.pairs]
        v = [p[1] for p in self.pairs]
        if max(u + v) >= n:
            raise UsageError(f"vector pair channel index {max(u + v)} out of range for {n} channels")
        scalars = [c for c in range(n) if c not in set(u + v)]
        assert self.vsht is not None  # __init__ requires it when there are pairs
        vec = self.vsht(tangent_components(f[..., u, :, :], f[..., v, :, :]))  # [..., P, 2, L, M]
        parts = [vec[..., 0, :, :], vec[..., 1, :, :]]
        if scalars:
            parts.insert(0, self.sht(f[..., scalars, :, :]))
        placed = torch.cat(parts, dim=-3)  # channels in the order scalars + u + v
        inverse = torch.argsort(torch.tensor(scalars + u + v, device=f.device))
        return placed.index_select(-3, inverse)
