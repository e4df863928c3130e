r"""WeatherBench 2 verification metrics (xarray in, xarray out).

Conventions follow ``weatherbench2/metrics.py``: fields have latitude/longitude dimensions (``lat``/``lon`` by
default, the names of the canonical store; pass ``lat_dim="latitude"`` etc. for WB2 stores), ensembles a
``realization`` dimension. Spatial means use cell-area latitude weights

.. math::

    w_i = \sin\varphi_{i+1/2} - \sin\varphi_{i-1/2}, \qquad \bar f = \frac{\sum_{ij} w_i f_{ij}}{\sum_{ij} w_i},

with cell bounds at the midpoints between rows and at the poles. Scores are computed per remaining coordinate
(e.g. per init time and lead); ``mean_dims`` averages the squared quantities over, e.g., ``time`` *before* the
square root, as WB2 does (time-mean MSE, then root). Spectra are in :mod:`sciml.forecasting.eval.spectra`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import cast

import numpy as np
import torch
import xarray as xr

from sciml.errors import UsageError
from sciml.forecasting.eval import spectra as _spectra

__all__ = [
    "acc",
    "angular_power_spectrum",
    "crps",
    "ensemble_mean_rmse",
    "latitude_weights",
    "mse",
    "per_variable",
    "rank_histogram",
    "rmse",
    "spatial_mean",
    "spread",
    "spread_skill_ratio",
    "zonal_energy_spectrum",
]


def latitude_weights(lat: xr.DataArray | np.ndarray, lat_dim: str = "lat") -> xr.DataArray:
    """WB2 cell-area weights for latitudes in degrees (either order), normalised to mean 1."""
    values = np.asarray(lat, dtype=np.float64)
    if values.ndim != 1 or values.size < 2:
        raise UsageError("latitude_weights needs a 1-D latitude coordinate with at least 2 rows")
    order = np.argsort(values)
    asc = values[order]
    if np.any(np.diff(asc) <= 0) or asc[0] < -90 or asc[-1] > 90:
        raise UsageError(f"latitudes must be distinct and within [-90, 90], got {values[:3]}...")
    bounds = np.concatenate([[-90.0], 0.5 * (asc[1:] + asc[:-1]), [90.0]])
    w_asc = np.diff(np.sin(np.deg2rad(bounds)))
    w = np.empty_like(w_asc)
    w[order] = w_asc
    w = w / w.mean()
    coords = {lat_dim: lat.values} if isinstance(lat, xr.DataArray) else None
    return xr.DataArray(w, dims=[lat_dim], coords=coords)


def _dims_check(x: xr.DataArray | xr.Dataset, *dims: str) -> None:
    missing = [d for d in dims if d not in x.dims]
    if missing:
        what = getattr(x, "name", None) or type(x).__name__
        raise UsageError(f"{what} lacks dimension(s) {missing} (has {list(x.dims)}); pass the dim names")


def per_variable(func: Callable[..., xr.DataArray]) -> Callable[..., xr.DataArray | xr.Dataset]:
    """Let ``func(forecast, *others, **kw)`` take Datasets: applied variable by variable, returning a Dataset."""

    @functools.wraps(func)
    def wrapper(first, *args, **kwargs):
        if not isinstance(first, xr.Dataset):
            return func(first, *args, **kwargs)
        out = {}
        for name in first.data_vars:
            others = [a[name] if isinstance(a, xr.Dataset) else a for a in args]
            out[name] = func(first[name], *others, **kwargs)
        return xr.Dataset(out)

    return wrapper


angular_power_spectrum = per_variable(_spectra.angular_power_spectrum)
zonal_energy_spectrum = per_variable(_spectra.zonal_energy_spectrum)


def spatial_mean(x: xr.DataArray, lat_dim: str = "lat", lon_dim: str = "lon") -> xr.DataArray:
    """Area-weighted mean over latitude and longitude."""
    _dims_check(x, lat_dim, lon_dim)
    w = latitude_weights(x[lat_dim], lat_dim) if lat_dim in x.coords else None
    if w is None:
        raise UsageError(f"{lat_dim!r} needs latitude coordinate values for area weights")
    return x.weighted(w).mean((lat_dim, lon_dim))


def _time_mean(x: xr.DataArray, mean_dims: Sequence[str]) -> xr.DataArray:
    dims = list(mean_dims)
    _dims_check(x, *dims)
    return x.mean(dims) if dims else x


@per_variable
def mse(forecast: xr.DataArray, truth: xr.DataArray, *, lat_dim="lat", lon_dim="lon", mean_dims=()) -> xr.DataArray:
    """Area-weighted mean squared error, averaged over ``mean_dims``."""
    return _time_mean(spatial_mean((forecast - truth) ** 2, lat_dim, lon_dim), mean_dims)


@per_variable
def rmse(forecast: xr.DataArray, truth: xr.DataArray, *, lat_dim="lat", lon_dim="lon", mean_dims=()) -> xr.DataArray:
    r""":math:`\sqrt{\overline{\mathrm{MSE}}}`: root of the area- and ``mean_dims``-averaged squared error."""
    return cast(xr.DataArray, np.sqrt(mse(forecast, truth, lat_dim=lat_dim, lon_dim=lon_dim, mean_dims=mean_dims)))


@per_variable
def ensemble_mean_rmse(
    forecast: xr.DataArray,
    truth: xr.DataArray,
    *,
    ensemble_dim: str = "realization",
    lat_dim="lat",
    lon_dim="lon",
    mean_dims=(),
) -> xr.DataArray:
    """RMSE of the ensemble mean."""
    _dims_check(forecast, ensemble_dim)
    return cast(
        xr.DataArray, rmse(forecast.mean(ensemble_dim), truth, lat_dim=lat_dim, lon_dim=lon_dim, mean_dims=mean_dims)
    )


@per_variable
def acc(
    forecast: xr.DataArray,
    truth: xr.DataArray,
    climatology: xr.DataArray,
    *,
    lat_dim="lat",
    lon_dim="lon",
    mean_dims=(),
) -> xr.DataArray:
    r"""Anomaly correlation coefficient against ``climatology`` (aligned/broadcastable to the fields).

    .. math::

        \mathrm{ACC} = \frac{\sum w f' o'}{\sqrt{\sum w f'^2 \sum w o'^2}}, \qquad f' = f - c,\; o' = o - c,

    per remaining coordinate, then averaged over ``mean_dims``.
    """
    fa, oa = forecast - climatology, truth - climatology
    num = spatial_mean(fa * oa, lat_dim, lon_dim)
    den = np.sqrt(spatial_mean(fa**2, lat_dim, lon_dim) * spatial_mean(oa**2, lat_dim, lon_dim))
    return _time_mean(num / den, mean_dims)


@per_variable
def crps(
    forecast: xr.DataArray,
    truth: xr.DataArray,
    *,
    ensemble_dim: str = "realization",
    lat_dim="lat",
    lon_dim="lon",
    mean_dims=(),
) -> xr.DataArray:
    r"""Fair CRPS (WB2 ``CRPS``): skill minus half the spread, each area-averaged.

    .. math::

        \mathrm{CRPS} = \frac1M\sum_e |X_e - Y| - \frac{1}{2M(M-1)}\sum_{i,j}|X_i - X_j|,

    computed by the training loss's kernel (:func:`sciml.forecasting.losses.crps_ensemble` with
    :class:`~sciml.forecasting.losses.FairCRPS`: one sort-based estimator for loss and metric).
    """
    from sciml.forecasting.losses import FairCRPS, crps_ensemble

    _dims_check(forecast, ensemble_dim, lat_dim, lon_dim)
    m = forecast.sizes[ensemble_dim]
    if m < 2:
        raise UsageError(f"the fair CRPS needs at least 2 members along {ensemble_dim!r}, got {m}")

    def kernel(fc: np.ndarray, obs: np.ndarray) -> np.ndarray:  # fc [..., M], obs broadcastable to fc[..., 0]
        # torch wants writable, contiguous memory (xarray may hand over read-only views)
        obs = np.require(np.broadcast_to(obs, fc.shape[:-1]), requirements=["C", "W"])
        out = crps_ensemble(
            torch.from_numpy(np.require(fc, requirements=["C", "W"])), torch.from_numpy(obs), FairCRPS(), -1
        )
        return out.numpy()

    score = xr.apply_ufunc(kernel, forecast, truth, input_core_dims=[[ensemble_dim], []])
    return _time_mean(spatial_mean(score, lat_dim, lon_dim), mean_dims)


@per_variable
def spread(
    forecast: xr.DataArray, *, ensemble_dim: str = "realization", lat_dim="lat", lon_dim="lon", mean_dims=()
) -> xr.DataArray:
    r"""Ensemble spread :math:`\sqrt{\overline{s^2}}`, :math:`s^2` the unbiased (ddof=1) member variance."""
    _dims_check(forecast, ensemble_dim)
    if forecast.sizes[ensemble_dim] < 2:
        raise UsageError(f"spread needs at least 2 members along {ensemble_dim!r}")
    var = forecast.var(ensemble_dim, ddof=1)
    return cast(xr.DataArray, np.sqrt(_time_mean(spatial_mean(var, lat_dim, lon_dim), mean_dims)))


@per_variable
def spread_skill_ratio(
    forecast: xr.DataArray,
    truth: xr.DataArray,
    *,
    ensemble_dim: str = "realization",
    lat_dim="lat",
    lon_dim="lon",
    mean_dims=(),
    finite_ensemble_correction: bool = False,
) -> xr.DataArray:
    r"""Spread / ensemble-mean RMSE (WB2 definition).

    For a perfect ``M``-member ensemble :math:`E(\bar x - y)^2 = \sigma^2 (1 + 1/M)` while
    :math:`E s^2 = \sigma^2`, so WB2's ratio tends to :math:`\sqrt{M/(M+1)}`; with
    ``finite_ensemble_correction`` it is multiplied by :math:`\sqrt{(M+1)/M}` (as in the GenCast and FCN3
    papers) and tends to 1.
    """
    kw = dict(ensemble_dim=ensemble_dim, lat_dim=lat_dim, lon_dim=lon_dim, mean_dims=mean_dims)
    ratio = cast(xr.DataArray, spread(forecast, **kw) / ensemble_mean_rmse(forecast, truth, **kw))
    if finite_ensemble_correction:
        m = forecast.sizes[ensemble_dim]
        ratio = ratio * np.sqrt((m + 1) / m)
    return ratio


@per_variable
def rank_histogram(
    forecast: xr.DataArray,
    truth: xr.DataArray,
    *,
    ensemble_dim: str = "realization",
    reduce_dims: Sequence[str] | None = None,
    seed: int = 0,
) -> xr.DataArray:
    """Counts of the truth's rank among the ``M`` members (``M + 1`` bins, dimension ``rank``).

    Ties are broken uniformly at random (seeded), as in WB2. ``reduce_dims`` (default: all dims of ``truth``) are
    pooled; the remaining ones are kept.
    """
    _dims_check(forecast, ensemble_dim)
    m = forecast.sizes[ensemble_dim]
    truth, forecast = xr.broadcast(truth, forecast.isel({ensemble_dim: 0}, drop=True))[0], forecast
    reduce = list(truth.dims) if reduce_dims is None else list(reduce_dims)
    _dims_check(truth, *reduce)
    below = (forecast < truth).sum(ensemble_dim)
    ties = (forecast == truth).sum(ensemble_dim)
    rng = np.random.default_rng(seed)
    rank = below + np.floor(rng.random(ties.shape) * (ties.values + 1)).astype(int)
    keep = [d for d in rank.dims if d not in reduce]
    stacked = rank.transpose(*keep, *reduce).values.reshape(*[rank.sizes[d] for d in keep], -1)
    counts = np.apply_along_axis(lambda r: np.bincount(r, minlength=m + 1), -1, stacked)
    coords = {d: rank.coords[d] for d in keep if d in rank.coords}
    coords["rank"] = np.arange(m + 1)
    return xr.DataArray(counts, dims=[*keep, "rank"], coords=coords, name="rank_histogram")
