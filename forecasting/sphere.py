"""Grid geometry shared by the model, the losses and the metrics: latitudes, quadrature weights, bandlimits.

The canonical I/O grid is equiangular with both poles, latitude strictly descending from 90 to -90 degrees and
longitude ascending from 0; the internal model grid is Legendre-Gauss. Latitude nodes and quadrature rules come
from ``torch_harmonics.quadrature`` (Clenshaw-Curtis for equiangular, Gauss for Legendre-Gauss), so that every
integral here agrees with the spherical-harmonic transforms of torch-harmonics.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch_harmonics.quadrature import precompute_latitudes

from sciml.errors import UsageError

Grid = Literal["equiangular", "legendre-gauss"]
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
