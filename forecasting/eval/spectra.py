r"""Spectra of fields on the sphere: the angular power spectrum :math:`P(l)` and WB2's zonal energy spectrum.

Both take ``xarray.DataArray`` objects with latitude/longitude dimensions and return DataArrays with the
spatial dimensions replaced by a wavenumber dimension (``l`` or ``zonal_wavenumber``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch_harmonics as th
import xarray as xr

from sciml.errors import UsageError
from sciml.forecasting.sphere import ChannelSHT, check_grid, exact_lmax, latitudes_deg

#: WeatherBench 2's Earth radius, the mean of the polar and equatorial radii (m).
EARTH_RADIUS_M = 1000.0 * (6357.0 + 6378.0) / 2.0


def _north_to_south(field: xr.DataArray, lat_dim: str, lon_dim: str) -> xr.DataArray:
    for dim in (lat_dim, lon_dim):
        if dim not in field.dims:
            raise UsageError(f"field has dims {field.dims}; expected a {dim!r} dimension (pass lat_dim/lon_dim)")
    if lat_dim in field.coords:
        lat = field[lat_dim].values
        if lat.size > 1 and lat[0] < lat[-1]:
            field = field.isel({lat_dim: slice(None, None, -1)})  # ascending input: flip, never mis-order
    return field


def power_spectrum_tensor(f: torch.Tensor, grid: str = "equiangular", lmax: int | None = None) -> torch.Tensor:
    r"""Angular power spectrum of ``f`` ``[..., nlat, nlon]`` (north to south) -> ``[..., lmax]`` (float64).

    .. math::

        P(l) = \sum_{m=-l}^{l} |f_{lm}|^2 = |f_{l0}|^2 + 2 \sum_{m=1}^{l} |f_{lm}|^2,

    with orthonormal spherical harmonics, so that :math:`\sum_l P(l) = \int_{S^2} f^2\, d\Omega` for a
    band-limited field (Parseval). ``lmax`` defaults to the exactly resolved band of the grid.
    """
    nlat, nlon = f.shape[-2:]
    lmax = exact_lmax(nlat, check_grid(grid)) if lmax is None else lmax
    if not 1 <= lmax <= nlon // 2 + 1:
        raise UsageError(f"lmax={lmax} must be in [1, nlon/2 + 1]")
    sht = th.RealSHT(nlat, nlon, lmax=lmax, mmax=lmax, grid=grid, norm="ortho").double()
    coeffs = sht(f.double())
    power = coeffs.abs() ** 2
    return power[..., 0] + 2.0 * power[..., 1:].sum(dim=-1)


def vector_coefficients(
    u: torch.Tensor, v: torch.Tensor, grid: str = "equiangular", lmax: int | None = None
) -> torch.Tensor:
    r"""Spheroidal, toroidal coefficients :math:`S_{lm}, T_{lm}` of a wind: ``[..., nlat, nlon]`` -> ``[..., 2, L, L]``.

    Complex (float64); see :func:`vector_power_tensor` for the decomposition. :math:`T_{11}` is a solid-body
    rotation about an equatorial axis (its phase turns by :math:`-\alpha` when the axis moves :math:`\alpha` east),
    :math:`S_{l0}` a zonal divergent flow.
    """
    nlat, nlon = u.shape[-2:]
    # one convention for wind coefficients, the loss's: channel 0 of the pair gives S, channel 1 gives T
    transform = ChannelSHT.serial(nlat, nlon, grid, lmax, pairs=[(0, 1)], dtype=torch.float64)
    if u.shape != v.shape:
        raise UsageError(f"u and v must have the same shape, got {tuple(u.shape)} and {tuple(v.shape)}")
    return transform(torch.stack([u.double(), v.double()], dim=-3))


def vector_power_tensor(
    u: torch.Tensor, v: torch.Tensor, grid: str = "equiangular", lmax: int | None = None
) -> torch.Tensor:
    r"""Kinetic energy per spheroidal/toroidal mode of a wind: ``u, v`` ``[..., nlat, nlon]`` -> ``[..., 2, L, L]``.

    ``u`` is the eastward, ``v`` the northward component (north to south). With the Helmholtz decomposition
    :math:`\mathbf u = \sum_{lm} S_{lm} \nabla Y_{lm} + T_{lm}\, \hat r \times \nabla Y_{lm}` (orthonormal
    :math:`Y_{lm}`, unit sphere; torch-harmonics' ``RealVectorSHT`` of :math:`(u_\theta, u_\phi) = (-v, u)`),

    .. math::

        E^{S}_{lm} = c_m\, l(l+1)\, |S_{lm}|^2,\qquad E^{T}_{lm} = c_m\, l(l+1)\, |T_{lm}|^2,\qquad
        \sum_{lm} E^{S}_{lm} + E^{T}_{lm} = \int_{S^2} |\mathbf u|^2\, d\Omega,

    with :math:`c_0 = 1`, :math:`c_{m>0} = 2` (Parseval for a band-limited field). Index 0 of the third-last
    dimension is the spheroidal (divergent) part, 1 the toroidal (rotational) part; entries with ``m > l`` are 0.
    Summing over ``m`` gives the energy per degree; ``m = 0`` alone is the zonally symmetric part.
    """
    coeffs = vector_coefficients(u, v, grid, lmax)  # [..., 2, L, M]
    lmax = coeffs.shape[-1]
    l = torch.arange(lmax, dtype=torch.float64)
    cm = torch.full((lmax,), 2.0, dtype=torch.float64)
    cm[0] = 1.0
    factor = (l * (l + 1))[:, None] * cm[None, :] * torch.tril(torch.ones(lmax, lmax, dtype=torch.float64))
    return coeffs.abs() ** 2 * factor


def angular_power_spectrum(
    field: xr.DataArray,
    *,
    lat_dim: str = "lat",
    lon_dim: str = "lon",
    grid: str = "equiangular",
    lmax: int | None = None,
) -> xr.DataArray:
    """:func:`power_spectrum_tensor` for a DataArray; the result has dimension ``l`` in place of lat/lon."""
    field = _north_to_south(field, lat_dim, lon_dim)
    nlat = field.sizes[lat_dim]
    if lat_dim in field.coords:
        expected = latitudes_deg(nlat, grid).numpy()
        if not np.allclose(field[lat_dim].values, expected, atol=1e-6 * 180):
            raise UsageError(
                f"latitudes of {field.name or 'the field'} are not a {grid} grid with {nlat} rows "
                f"(got {field[lat_dim].values[:3]}...); pass grid='legendre-gauss' for Gaussian grids"
            )
    other = [d for d in field.dims if d not in (lat_dim, lon_dim)]
    data = torch.from_numpy(np.ascontiguousarray(field.transpose(*other, lat_dim, lon_dim).values))
    spec = power_spectrum_tensor(data, grid=grid, lmax=lmax).numpy()
    coords = {d: field.coords[d] for d in other if d in field.coords}
    coords["l"] = np.arange(spec.shape[-1])
    return xr.DataArray(spec, dims=[*other, "l"], coords=coords, name=field.name, attrs={"long_name": "P(l)"})


def zonal_energy_spectrum(
    field: xr.DataArray, *, lat_dim: str = "lat", lon_dim: str = "lon", radius: float = EARTH_RADIUS_M
) -> xr.DataArray:
    r"""WeatherBench 2's zonal energy spectrum along each latitude circle.

    .. math::

        F_k = \frac1L \sum_{j=0}^{L-1} f_j e^{-2\pi i kj/L}, \qquad S_0 = C|F_0|^2, \quad S_k = 2C|F_k|^2,
        \qquad C = 2\pi R\cos\varphi,

    for ``k = 0..L//2``, with the wavelength ``C/k`` as a coordinate. One deviation from WB2: for even ``L`` the
    Nyquist bin ``k = L/2`` has no negative-frequency partner and is not doubled, so that
    :math:`\sum_k S_k = \int f^2\, d\ell` (Parseval) holds exactly on every circle.
    """
    field = _north_to_south(field, lat_dim, lon_dim)
    if lat_dim not in field.coords:
        raise UsageError(f"zonal_energy_spectrum needs latitude coordinates on {lat_dim!r}")
    n = field.sizes[lon_dim]
    other = [d for d in field.dims if d != lon_dim]
    values = field.transpose(*other, lon_dim).values
    F = np.fft.rfft(values, axis=-1) / n
    factor = np.full(F.shape[-1], 2.0)
    factor[0] = 1.0
    if n % 2 == 0:
        factor[-1] = 1.0
    circ = 2 * np.pi * radius * np.cos(np.deg2rad(field[lat_dim].values))
    circ = np.clip(circ, 0.0, None)
    circ_da = xr.DataArray(circ, dims=[lat_dim])
    energy = xr.DataArray(
        factor * np.abs(F) ** 2,
        dims=[*other, "zonal_wavenumber"],
        coords={**{d: field.coords[d] for d in other if d in field.coords}, "zonal_wavenumber": np.arange(F.shape[-1])},
        name=field.name,
    )
    energy = energy * circ_da
    k = xr.DataArray(np.arange(F.shape[-1]), dims=["zonal_wavenumber"])
    with np.errstate(divide="ignore"):
        wavelength = xr.where(k > 0, circ_da / k.where(k > 0, 1), np.inf)
    return energy.assign_coords(wavelength=wavelength.transpose(lat_dim, "zonal_wavenumber"))
