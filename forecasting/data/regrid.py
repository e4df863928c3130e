r"""Spectral regridding onto a contract grid (``sciml data regrid``), built for pole-less equiangular input.

WeatherBench2's coarse ERA5 stores (``64x32`` and ``128x64_equiangular_conservative``) sample cell centres,
:math:`\theta_j = (j+\tfrac12)\pi/N`, no poles: neither of the two quadratures the models' spherical transforms
use. torch-harmonics' :class:`ResampleS2` only knows its own named grids (equiangular with poles, Gauss,
Lobatto, ...) and is bilinear (second order, it damps the smallest resolved scales), so it cannot take this
input faithfully. Instead the field is interpolated *spectrally*:

1. longitude: :math:`F_m(\theta_j) = \frac1{n}\sum_k f(\theta_j,\lambda_k) e^{-im\lambda_k}` (FFT), ``m < n/2``;
2. latitude, for each ``m``: the coefficients :math:`c_{lm}`, :math:`m \le l < L`, that reproduce
   :math:`F_m(\theta_j)` in least squares, :math:`\sum_l c_{lm}\bar P_l^m(\cos\theta_j) = F_m(\theta_j)`, with
   :math:`\bar P_l^m` the orthonormal associated Legendre functions and :math:`L = \min(N, n/2)`. The
   :math:`\cos\theta_j` of the pole-less grid are the Chebyshev-Gauss nodes, on which this collocation is well
   conditioned; for ``m = 0`` it is polynomial interpolation through all ``N`` rows (unlike a quadrature, which
   would be exact only up to degree ``N/2``);
3. the truncated expansion is evaluated on the target latitudes and summed back over longitude (inverse FFT).

Any field of degree :math:`l < L` (a polynomial of that degree in :math:`x, y, z`) is reproduced to rounding;
the target keeps at most the degrees it can represent (``nlon_out/2`` in ``m``, ``nlat_out`` rows in ``l``).
Spectral interpolation overshoots near sharp steps (Gibbs): the land-sea mask is clipped to [0, 1].
"""

from __future__ import annotations

import re

import numpy as np
import xarray as xr

from sciml.errors import UsageError

from .grid import Grid, longitudes

_TARGET = re.compile(r"^(equiangular|gaussian):(\d+)(?:x(\d+))?$")


def parse_target(text: str) -> Grid:
    """``equiangular:NLATxNLON``, ``gaussian:NLATxNLON`` or ``gaussian:N`` (N x 2N) -> :class:`Grid`."""
    m = _TARGET.match(text.strip())
    if m is None:
        raise UsageError(
            f"--to {text!r}: expected equiangular:NLATxNLON (e.g. equiangular:33x64), gaussian:NLATxNLON or "
            "gaussian:N (N latitudes, 2N longitudes)"
        )
    kind, nlat = m.group(1), int(m.group(2))
    if m.group(3) is None:
        if kind == "equiangular":
            raise UsageError(f"--to {text!r}: give both sizes, e.g. equiangular:{nlat}x{2 * (nlat - 1)}")
        nlon = 2 * nlat
    else:
        nlon = int(m.group(3))
    if nlat < 3 or nlon < 4:
        raise UsageError(f"--to {text!r}: grid too small (need nlat >= 3, nlon >= 4)")
    return Grid(kind, nlat, nlon)  # type: ignore[arg-type]


def legendre(lmax: int, x: np.ndarray) -> np.ndarray:
    r"""Orthonormal associated Legendre functions ``P[m, l, j]`` = :math:`\bar P_l^m(x_j)`, ``0 <= m <= l < lmax``.

    Normalised so that :math:`\int_{-1}^{1}\bar P_l^m \bar P_{l'}^m\,dx = \delta_{ll'}`, by the standard
    recursions :math:`\bar P_m^m = \sqrt{(2m+1)/(2m)}\,\sqrt{1-x^2}\,\bar P_{m-1}^{m-1}`,
    :math:`\bar P_{m+1}^m = \sqrt{2m+3}\,x\bar P_m^m` and
    :math:`\bar P_l^m = a_{lm}(x\bar P_{l-1}^m - b_{lm}\bar P_{l-2}^m)`, stable in float64.
    """
    x = np.asarray(x, dtype=np.float64)
    s = np.sqrt(np.clip(1.0 - x * x, 0.0, None))
    P = np.zeros((lmax, lmax, x.size))
    pmm = np.full(x.size, np.sqrt(0.5))
    for m in range(lmax):
        if m > 0:
            pmm = np.sqrt((2 * m + 1) / (2 * m)) * s * pmm
        P[m, m] = pmm
        if m + 1 < lmax:
            P[m, m + 1] = np.sqrt(2 * m + 3) * x * pmm
        for l in range(m + 2, lmax):
            a = np.sqrt((4 * l * l - 1) / (l * l - m * m))
            b = np.sqrt(((l - 1) ** 2 - m * m) / (4 * (l - 1) ** 2 - 1))
            P[m, l] = a * (x * P[m, l - 1] - b * P[m, l - 2])
    return P


class SpectralRegridder:
    """Maps fields ``[..., nlat_in, nlon_in]`` (latitudes ``lat_in`` in degrees, north to south) onto ``target``."""

    def __init__(self, lat_in: np.ndarray, nlon_in: int, target: Grid) -> None:
        lat_in = np.asarray(lat_in, dtype=np.float64)
        self.nlat_in, self.nlon_in, self.target = lat_in.size, nlon_in, target
        mmax = min((nlon_in - 1) // 2, (target.nlon - 1) // 2)  # no Nyquist mode: its sine part is not sampled
        lmax = min(self.nlat_in, target.nlat, mmax + 1)
        self.lmax, self.mmax = lmax, min(mmax, lmax - 1)
        p_in = legendre(lmax, np.sin(np.radians(lat_in)))
        p_out = legendre(lmax, np.sin(np.radians(target.lat)))
        # per m: least-squares fit [nlat_in] -> [l] then evaluation [l] -> [nlat_out], one matrix per m
        self.ops = np.stack([p_out[m, m:].T @ np.linalg.pinv(p_in[m, m:].T) for m in range(self.mmax + 1)])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.shape[-2:] != (self.nlat_in, self.nlon_in):
            raise UsageError(f"field shape {x.shape[-2:]} != grid {(self.nlat_in, self.nlon_in)}")
        F = np.fft.rfft(x, axis=-1)[..., : self.mmax + 1] / self.nlon_in  # [..., nlat_in, M]
        G = np.einsum("mij,...jm->...im", self.ops, F)  # [..., nlat_out, M]
        return np.fft.irfft(G * self.target.nlon, n=self.target.nlon, axis=-1)

    def dataset(self, ds: xr.Dataset) -> xr.Dataset:
        """Regrid every (lat, lon) variable of a canonical dataset; float32 out, CF attributes kept."""
        out = {}
        for name, v in ds.data_vars.items():
            vals = self(v.transpose(..., "lat", "lon").values)
            if name == "lsm":
                vals = np.clip(vals, 0.0, 1.0)
            dims = [d for d in v.dims if d not in ("lat", "lon")] + ["lat", "lon"]
            out[name] = xr.DataArray(vals.astype(np.float32), dims=dims, attrs=v.attrs)
        coords = {k: c for k, c in ds.coords.items() if not ({"lat", "lon"} & set(c.dims))}
        res = xr.Dataset(out, coords={**coords, "lat": self.target.lat, "lon": longitudes(self.target.nlon)})
        res["lat"].attrs.update(units="degrees_north", long_name="latitude")
        res["lon"].attrs.update(units="degrees_east", long_name="longitude")
        res.attrs = {**ds.attrs, "grid_kind": self.target.kind}
        return res
