"""The canonical dataset contract that every reader produces and every consumer relies on.

An ``xarray.Dataset`` with

* dims ``time, lat, lon`` for dynamic channels and ``lat, lon`` for static fields;
* ``lat`` strictly descending 90 -> -90 on an equiangular-with-poles or Gaussian grid (:mod:`.grid`),
  ``lon`` ascending ``0 .. 360 - 360/nlon``;
* ``time`` strictly increasing ``datetime64[ns]`` with one step ``dt``; gaps that are whole multiples of
  ``dt`` are *missing steps* (reported, never bridged by a training window), anything else is an error;
* one float32 variable per channel, named like FCN3's channels: ``<var><level hPa>`` for pressure levels
  (``z500``, ``t850``, ``u250``) and ``u10m, v10m, u100m, v100m, t2m, msl, sp, tcwv, tp6h, sst`` at the surface;
  static fields ``orog`` (surface geopotential / g, m) and ``lsm`` (land-sea mask, 0..1);
* CF attributes ``units`` and ``long_name`` on every channel;
* optional coordinate ``segment(time)`` (int): independent trajectories laid end to end in one store;
* optionally a leading ``member`` dimension (ensemble members of an ERA5 EDA/CDS ensemble request kept side by
  side: ``sciml data convert --member all``).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import xarray as xr

from sciml.errors import UsageError

from .grid import Grid, detect_grid

# short variable name -> (long_name, units). Pressure-level variables take a level suffix.
LEVEL_VARS = {
    "z": ("geopotential", "m2 s-2"),
    "t": ("temperature", "K"),
    "u": ("u_component_of_wind", "m s-1"),
    "v": ("v_component_of_wind", "m s-1"),
    "q": ("specific_humidity", "kg kg-1"),
    "r": ("relative_humidity", "%"),
    "w": ("vertical_velocity", "Pa s-1"),
    "vo": ("relative_vorticity", "s-1"),
}
SURFACE_VARS = {
    "u10m": ("10m_u_component_of_wind", "m s-1"),
    "v10m": ("10m_v_component_of_wind", "m s-1"),
    "u100m": ("100m_u_component_of_wind", "m s-1"),
    "v100m": ("100m_v_component_of_wind", "m s-1"),
    "t2m": ("2m_temperature", "K"),
    "msl": ("mean_sea_level_pressure", "Pa"),
    "sp": ("surface_pressure", "Pa"),
    "tcwv": ("total_column_water_vapour", "kg m-2"),
    "tp6h": ("total_precipitation_6hr", "m"),
    "sst": ("sea_surface_temperature", "K"),
}
STATIC_VARS = {
    "orog": ("orography (surface geopotential / g)", "m"),
    "lsm": ("land_sea_mask", "1"),
}
CHANNEL_META = {k: {"long_name": v[0], "units": v[1]} for k, v in {**LEVEL_VARS, **SURFACE_VARS}.items()}
_LEVEL_RE = re.compile(r"^([a-z]+?)(\d+)$")


def channel_name(var: str, level: int | None = None) -> str:
    """``('z', 500) -> 'z500'``; surface channels have no level."""
    return var if level is None else f"{var}{int(level)}"


def channel_meta(name: str) -> dict[str, str]:
    """CF attributes (``long_name``, ``units``) of a channel name such as ``t850`` or ``u10m``."""
    if name in SURFACE_VARS:
        long, units = SURFACE_VARS[name]
        return {"long_name": long, "units": units}
    if name in STATIC_VARS:
        long, units = STATIC_VARS[name]
        return {"long_name": long, "units": units}
    m = _LEVEL_RE.match(name)
    if m and m.group(1) in LEVEL_VARS:
        long, units = LEVEL_VARS[m.group(1)]
        return {"long_name": f"{long} at {m.group(2)} hPa", "units": units}
    return {}


def dynamic_channels(ds: xr.Dataset) -> list[str]:
    """Names of the time-dependent channels, in dataset order."""
    return [str(k) for k, v in ds.data_vars.items() if "time" in v.dims]


def static_channels(ds: xr.Dataset) -> list[str]:
    """Names of the static (lat, lon) fields, in dataset order."""
    return [str(k) for k, v in ds.data_vars.items() if "time" not in v.dims]


def time_step(times: np.ndarray | pd.DatetimeIndex, *, where: str = "dataset") -> tuple[pd.Timedelta, int]:
    """Return the regular step and the number of missing steps of a strictly increasing time axis.

    The step is the smallest difference; every difference must be a whole multiple of it.

    Raises
    ------
    UsageError
        On duplicated, decreasing or irregular times (differences that are not multiples of the step).
    """
    t = pd.DatetimeIndex(times)
    if t.size < 2:
        return pd.Timedelta(0), 0
    d = np.diff(t.as_unit("ns").asi8)
    if (d == 0).any():
        dup = t[1:][d == 0]
        raise UsageError(
            f"{where}: duplicated time steps {[str(x) for x in dup[:5]]}"
            f"{' ...' if dup.size > 5 else ''}; remove the duplicates (e.g. files that overlap in time)"
        )
    if (d < 0).any():
        bad = t[1:][d < 0]
        raise UsageError(f"{where}: times are not increasing at {[str(x) for x in bad[:5]]}; sort them first")
    step = int(d.min())
    ratio = d / step
    irregular = np.abs(ratio - np.round(ratio)) > 1e-9
    if irregular.any():
        at = t[1:][irregular]
        raise UsageError(
            f"{where}: irregular time axis: the smallest step is {pd.Timedelta(step)} but the step before "
            f"{[str(x) for x in at[:5]]} is not a multiple of it; resample to a regular step first"
        )
    missing = int((np.round(ratio) - 1).sum())
    return pd.Timedelta(step), missing


def _canonical_lon(ds: xr.Dataset, where: str) -> xr.Dataset:
    lon = ds["lon"].values.astype(np.float64)
    wrapped = np.mod(lon, 360.0)
    wrapped[np.isclose(wrapped, 360.0, atol=1e-6)] = 0.0
    if not np.array_equal(wrapped, lon) or np.any(np.diff(lon) <= 0):
        order = np.argsort(wrapped, kind="stable")
        ds = ds.assign_coords(lon=wrapped).isel(lon=order)
        if np.any(np.diff(ds["lon"].values) <= 0):
            raise UsageError(f"{where}: longitudes contain duplicates after wrapping to [0, 360)")
    return ds


def _canonical_lat(ds: xr.Dataset, where: str) -> xr.Dataset:
    lat = ds["lat"].values.astype(np.float64)
    d = np.diff(lat)
    if lat.size > 1 and np.all(d > 0):
        ds = ds.isel(lat=slice(None, None, -1))  # ascending (e.g. WB2 HRES stores): flip, data with it
    elif lat.size > 1 and not np.all(d < 0):
        raise UsageError(f"{where}: latitudes are neither strictly ascending nor strictly descending")
    return ds


def finalize_canonical(ds: xr.Dataset, *, where: str = "dataset", allow_poleless: bool = False) -> xr.Dataset:
    """Put a dataset with dims (time, lat, lon) / (lat, lon) in canonical form and validate it.

    Flips ascending latitudes (with the data), wraps longitudes into [0, 360) and sorts them, sorts by
    time, casts channels to float32, fills missing CF attributes and checks grid and time axis.
    ``allow_poleless`` also accepts the equiangular grid without poles (input of ``sciml data regrid``).

    Raises
    ------
    UsageError
        Wrong dims, unsupported grid, duplicated or irregular times, non-numeric channels.
    """
    for c in ("lat", "lon"):
        if c not in ds.dims:
            raise UsageError(f"{where}: no {c!r} dimension (dims are {list(ds.dims)})")
    given_lon = ds["lon"].values
    ds = _canonical_lat(_canonical_lon(ds, where), where)
    grid = detect_grid(
        ds["lat"].values, ds["lon"].values, where=where, allow_poleless=allow_poleless, given_lon=given_lon
    )
    ds = ds.assign_coords(lat=grid.lat, lon=grid.lon)  # exact node values, not float32-rounded ones
    if "time" in ds.dims:
        t = pd.DatetimeIndex(ds["time"].values).as_unit("ns")
        ds = ds.assign_coords(time=t.values)  # one resolution everywhere (pandas 3 infers us/s otherwise)
        if not t.is_monotonic_increasing:
            ds = ds.isel(time=np.argsort(t.as_unit("ns").asi8, kind="stable"))
        time_step(ds["time"].values, where=where)
    out = {}
    for name, var in ds.data_vars.items():
        if "time" not in var.dims and str(name) not in STATIC_VARS and channel_meta(str(name)):
            raise UsageError(
                f"{where}: variable {name!r} has no time dimension (dims {var.dims}), but {name} is a dynamic channel, "
                f"not a static field ({', '.join(STATIC_VARS)}); give it a time axis or rename it"
            )
        dims = ("time", "lat", "lon") if "time" in var.dims else ("lat", "lon")
        if "member" in var.dims:
            dims = ("member", *dims)
        if set(var.dims) != set(dims):
            raise UsageError(
                f"{where}: variable {name!r} has dims {var.dims}; expected {dims} (select a single level/member "
                "or flatten levels into channels first)"
            )
        if not np.issubdtype(var.dtype, np.number):
            raise UsageError(f"{where}: variable {name!r} is not numeric ({var.dtype})")
        v = var.transpose(*dims)
        if v.dtype != np.float32:
            v = v.astype(np.float32)
        v.attrs = {**channel_meta(str(name)), **{k: a for k, a in var.attrs.items() if k in ("units", "long_name")}}
        out[name] = v
    keep = {"member", "time", "lat", "lon"}
    res = xr.Dataset(out, coords={k: c for k, c in ds.coords.items() if c.dims and set(c.dims) <= keep})
    res["lat"].attrs.update(units="degrees_north", long_name="latitude")
    res["lon"].attrs.update(units="degrees_east", long_name="longitude")
    res.attrs = dict(ds.attrs)
    res.attrs.update(grid_kind=grid.kind, sciml_contract="1")
    return res


def grid_of(ds: xr.Dataset, where: str = "dataset", allow_poleless: bool = False) -> Grid:
    """The :class:`Grid` of a canonical dataset."""
    return detect_grid(ds["lat"].values, ds["lon"].values, where=where, allow_poleless=allow_poleless)


def segments(ds: xr.Dataset) -> np.ndarray:
    """Trajectory id per time step (all zeros when the store has no ``segment`` coordinate)."""
    if "segment" in ds.coords:
        return np.asarray(ds["segment"].values, dtype=np.int64)
    return np.zeros(ds.sizes.get("time", 0), dtype=np.int64)


def select_channels(ds: xr.Dataset, channels: tuple[str, ...] | list[str] | None, where: str) -> xr.Dataset:
    """Keep ``channels`` (dynamic or static) in the given order; error listing what exists if any is missing."""
    if channels is None:
        return ds
    missing = [c for c in channels if c not in ds.data_vars]
    if missing:
        raise UsageError(
            f"{where}: channel(s) {missing} not found; available: {sorted(map(str, ds.data_vars))}. "
            "Fix the channel list (--channels spec.yaml) or convert a source that has them."
        )
    return ds[list(channels)]
