"""Latitude/longitude grids of the canonical dataset contract, their detection and quadrature weights.

Two latitude grids are accepted, both listed north to south (90 -> -90) with longitudes ``360 k / nlon`` from 0:

* ``equiangular``: ``nlat`` equally spaced latitudes *including both poles*,
  :math:`\\varphi_j = 90^\\circ - 180^\\circ j/(n_\\text{lat}-1)`. This is exactly torch-harmonics'
  ``grid="equiangular"`` (Clenshaw-Curtis nodes) for any ``nlat``, odd (ERA5 721, 33) or even (64: spacing
  180/63 degrees). The pole rows make it the ERA5 0.25 degree layout.
* ``gaussian``: the ``nlat`` Gauss-Legendre nodes, :math:`\\sin\\varphi_j` = roots of :math:`P_{n_\\text{lat}}`
  (torch-harmonics ``grid="legendre-gauss"``).

A third kind is recognised only where a caller asks for it (``allow_poleless=True``: ``sciml data regrid``):

* ``poleless``: ``nlat`` equally spaced latitudes at cell centres,
  :math:`\\varphi_j = 90^\\circ - 180^\\circ (j+\\tfrac12)/n_\\text{lat}` (WeatherBench2's
  ``equiangular_conservative`` 64x32 and 128x64 grids: latitudes +-87.1875 ...). Its :math:`\\cos\\theta_j` are
  the Chebyshev-Gauss nodes, on which :mod:`.regrid` interpolates spectrally onto one of the two grids above.

Anything else (a regional box, irregular spacing) is rejected with a :class:`~sciml.errors.UsageError`: the
spherical transforms of the models need one of the two contract quadratures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from sciml.errors import UsageError

GridKind = Literal["equiangular", "gaussian", "poleless"]
TH_GRID = {"equiangular": "equiangular", "gaussian": "legendre-gauss"}  # our name -> torch-harmonics name

# Coordinates in files are often float32 or printed with a few decimals: compare in degrees at this tolerance.
LAT_ATOL_DEG = 1e-3


def equiangular_latitudes(nlat: int) -> np.ndarray:
    """Latitudes in degrees, 90 -> -90 inclusive, of the equiangular grid with poles."""
    if nlat < 3:
        raise UsageError(f"an equiangular grid needs nlat >= 3 (both poles and the equator region), got {nlat}")
    return np.linspace(90.0, -90.0, nlat)


def gaussian_latitudes(nlat: int) -> np.ndarray:
    """Latitudes in degrees, north to south, of the Gauss-Legendre grid: arcsin of the roots of P_nlat."""
    if nlat < 2:
        raise UsageError(f"a Gaussian grid needs nlat >= 2, got {nlat}")
    x, _ = np.polynomial.legendre.leggauss(nlat)
    return np.degrees(np.arcsin(x))[::-1].copy()


def poleless_latitudes(nlat: int) -> np.ndarray:
    """Latitudes in degrees, north to south, of the equiangular grid without poles (cell centres)."""
    if nlat < 2:
        raise UsageError(f"a pole-less equiangular grid needs nlat >= 2, got {nlat}")
    return 90.0 - (np.arange(nlat) + 0.5) * (180.0 / nlat)


def longitudes(nlon: int) -> np.ndarray:
    """Longitudes in degrees, ``360 k / nlon`` for k = 0..nlon-1."""
    if nlon < 2:
        raise UsageError(f"nlon must be >= 2, got {nlon}")
    return np.arange(nlon) * (360.0 / nlon)


def latitudes(kind: GridKind, nlat: int) -> np.ndarray:
    """Latitudes (degrees, descending) of grid ``kind``."""
    if kind == "equiangular":
        return equiangular_latitudes(nlat)
    if kind == "gaussian":
        return gaussian_latitudes(nlat)
    if kind == "poleless":
        return poleless_latitudes(nlat)
    raise UsageError(f"unknown grid kind {kind!r}; use 'equiangular' or 'gaussian'")


@dataclass(frozen=True)
class Grid:
    """A global lat-lon grid of the contract: ``kind``, ``nlat``, ``nlon``."""

    kind: GridKind
    nlat: int
    nlon: int

    @property
    def lat(self) -> np.ndarray:
        return latitudes(self.kind, self.nlat)

    @property
    def lon(self) -> np.ndarray:
        return longitudes(self.nlon)

    @property
    def th_grid(self) -> str:
        """The torch-harmonics ``grid=`` name of this grid."""
        if self.kind not in TH_GRID:
            raise UsageError(f"{self.describe()} has no torch-harmonics quadrature; regrid it (`sciml data regrid`)")
        return TH_GRID[self.kind]

    def quadrature_weights(self) -> np.ndarray:
        r"""Area weights ``w[lat, lon]`` (float64) that sum to 1: :math:`\int f\,d\Omega/4\pi \approx \sum w f`.

        .. math:: w_{jk} = \frac{q_j}{2\,n_\text{lon}},

        with :math:`q_j` the Clenshaw-Curtis (equiangular) or Gauss-Legendre (gaussian) weights on
        :math:`\cos\theta\in[-1,1]` (they sum to 2), taken from torch-harmonics so that statistics, losses and
        spectral transforms share one quadrature. Both rules integrate polynomials in :math:`\sin\varphi`
        exactly up to degree ``nlat-1`` (CC) or ``2 nlat - 1`` (Gauss).
        """
        from sciml.forecasting.sphere import quadrature_weights  # the one quadrature of losses, metrics and stats

        q = quadrature_weights(self.nlat, self.nlon, self.th_grid, normalize=True).numpy()  # [nlat, 1], north first
        return np.repeat(q, self.nlon, axis=1)

    def describe(self) -> str:
        return f"{self.kind} {self.nlat}x{self.nlon}"


def regrid_hint(where: str, nlat: int, nlon: int) -> str:
    """The one-line fix for a pole-less grid: the ``sciml data regrid`` command onto the grid with poles."""
    return (
        f"regrid it onto a grid with poles: sciml data regrid {where} --to equiangular:{nlat + 1}x{nlon} --out NEW.zarr"
    )


def detect_grid(
    lat: np.ndarray,
    lon: np.ndarray,
    *,
    where: str = "dataset",
    allow_poleless: bool = False,
    given_lon: np.ndarray | None = None,
) -> Grid:
    """Classify descending latitudes and ascending longitudes as one of the contract grids.

    Parameters
    ----------
    lat, lon
        Coordinates in degrees, already put in canonical order (lat descending, lon ascending from 0).
    where
        Name of the file or store, used in error messages.
    allow_poleless
        Also accept the equiangular grid without poles (kind ``poleless``), for regridding.
    given_lon
        The longitudes as the file has them (before wrapping into [0, 360)), quoted in error messages.

    Raises
    ------
    UsageError
        If the latitudes are neither equiangular-with-poles nor Gaussian, or longitudes are not
        ``360 k / nlon``.
    """
    lat = np.asarray(lat, dtype=np.float64)
    lon = np.asarray(lon, dtype=np.float64)
    nlat, nlon = lat.size, lon.size
    if nlon < 2 or not np.allclose(lon, longitudes(nlon), atol=LAT_ATOL_DEG, rtol=0):
        shown = np.asarray(lon if given_lon is None else given_lon, dtype=np.float64)
        raise UsageError(
            f"{where}: longitudes {shown.min():g} .. {shown.max():g} ({nlon} values) do not cover the globe in equal "
            f"steps from 0; regional or irregular grids are not supported: download the global field "
            f"(latitude {lat.max():g} .. {lat.min():g} here)"
        )
    kinds: tuple[GridKind, ...] = (
        ("equiangular", "gaussian", "poleless") if allow_poleless else ("equiangular", "gaussian")
    )
    for kind in kinds:
        ref = latitudes(kind, nlat) if nlat >= 3 else None
        if ref is not None and np.allclose(lat, ref, atol=LAT_ATOL_DEG, rtol=0):
            return Grid(kind, nlat, nlon)
    hint = ""
    if nlat >= 2:
        d = np.diff(lat)
        if np.allclose(lat, poleless_latitudes(nlat), atol=LAT_ATOL_DEG, rtol=0):
            hint = f" It is equiangular WITHOUT poles (first latitude {lat[0]:g}): {regrid_hint(where, nlat, nlon)}."
        elif np.allclose(d, d[0], atol=LAT_ATOL_DEG) and abs(lat[0]) < 90 - LAT_ATOL_DEG:
            hint = " It covers only part of the globe (a regional subset): download the global field."
    raise UsageError(
        f"{where}: the {nlat} latitudes ({lat[0]:g} ... {lat[-1]:g}) are neither an equiangular grid with poles "
        f"(90 -> -90 in equal steps) nor a Gaussian (Gauss-Legendre) grid.{hint}"
    )
