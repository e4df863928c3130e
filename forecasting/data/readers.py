"""Readers that map the ERA5 layouts users arrive with onto the canonical contract (:mod:`.contract`).

Layouts (detected automatically, ``layout=`` overrides):

``canonical``
    A zarr store written by ``sciml data convert`` / ``sciml data synth`` (attribute ``sciml_contract``).
``wb2``
    WeatherBench2 zarr: dims ``time, level, latitude, longitude``, long names (``geopotential``,
    ``2m_temperature``, ...), latitude in either order.
``cds``
    Copernicus CDS NetCDF (new CDS, since 2024): short names (``z``, ``t2m``, ``u10``), ``valid_time``,
    ``pressure_level``, extra coordinates ``number``/``expver``; one file, a folder or list of ``.nc`` files, or
    the ``.zip`` the CDS returns when instantaneous and accumulated fields are mixed. Old-CDS files (``expver``
    dimension) and NetCDF written by cfgrib/xarray (``time``, ``step``, ``valid_time``, ``isobaricInhPa``) too.
``grib``
    GRIB 1/2 files (CDS or MARS downloads) read through ``cfgrib`` (extra ``sciml[grib]``), same rules as ``cds``.

Files are recognised by their first bytes (:func:`.ecmwf.sniff`), never by their names. Ensemble members and
ERA5/ERA5T streams are chosen with :class:`.ecmwf.Selection` (``--member``, ``--expver``).
``makani``
    A folder with ``YYYY.h5`` files holding ``fields[time, channel, lat, lon]`` and a ``data.json`` (or
    ``metadata/data.json``) with ``dhours`` and ``coords.{lat, lon, channel}``.

Every reader returns a :class:`Source`: a list of canonical *parts* (one per file or per group of files covering
the same times) that stay lazy (xarray backend arrays, no dask), so conversion streams part by part.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from sciml.errors import UsageError

from .contract import channel_name, finalize_canonical, segments, time_step
from .ecmwf import Selection, normalize, open_file, sniff, zip_members
from .layouts import LAYOUTS

LOGGER = logging.getLogger(__name__)
GRAVITY = 9.80665  # ECMWF's g, converts surface geopotential to orography

WB2_LEVEL_VARS = {
    "geopotential": "z",
    "temperature": "t",
    "u_component_of_wind": "u",
    "v_component_of_wind": "v",
    "specific_humidity": "q",
    "relative_humidity": "r",
    "vertical_velocity": "w",
}
WB2_SURFACE_VARS = {
    "2m_temperature": "t2m",
    "10m_u_component_of_wind": "u10m",
    "10m_v_component_of_wind": "v10m",
    "100m_u_component_of_wind": "u100m",
    "100m_v_component_of_wind": "v100m",
    "mean_sea_level_pressure": "msl",
    "surface_pressure": "sp",
    "total_column_water_vapour": "tcwv",
    "total_precipitation_6hr": "tp6h",
    "sea_surface_temperature": "sst",
}
CDS_LEVEL_VARS = {"z": "z", "t": "t", "u": "u", "v": "v", "q": "q", "r": "r", "w": "w", "vo": "vo"}
CDS_SURFACE_VARS = {
    "t2m": "t2m",
    "u10": "u10m",
    "v10": "v10m",
    "u100": "u100m",
    "v100": "v100m",
    "msl": "msl",
    "sp": "sp",
    "tcwv": "tcwv",
    "tp": "tp",
    "sst": "sst",
}


@dataclass
class Source:
    """Canonical view of an input: lazy ``parts`` in time order plus the files behind them.

    Use as a context manager (or call :meth:`close`): temporary files (extracted zip members) and open file
    handles are released on exit.
    """

    layout: str
    path: Path
    parts: list[xr.Dataset]
    static: xr.Dataset | None = None
    _cleanup: list = field(default_factory=list, repr=False)

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for p in self.parts:
            p.close()
        for c in self._cleanup:
            c()
        self._cleanup.clear()

    @property
    def times(self) -> pd.DatetimeIndex:
        return pd.DatetimeIndex(np.concatenate([p["time"].values for p in self.parts]))

    @property
    def channels(self) -> list[str]:
        return [str(v) for v in self.parts[0].data_vars]

    @property
    def static_channels(self) -> list[str]:
        return [] if self.static is None else [str(v) for v in self.static.data_vars]

    def dataset(self) -> xr.Dataset:
        """All parts concatenated in memory, static fields merged (small data, tests, ``check``)."""
        ds = self.parts[0] if len(self.parts) == 1 else xr.concat(self.parts, dim="time", join="exact")
        if self.static is not None:
            ds = ds.merge(self.static)
        return ds

    def select(self, channels: Sequence[str] | None, static: Sequence[str] | None = None) -> Source:
        """Keep only ``channels`` (dynamic, in order) and ``static``; errors list what exists."""
        where = str(self.path)
        if channels is not None:
            missing = [c for c in channels if c not in self.parts[0].data_vars]
            if missing:
                raise UsageError(
                    f"{where}: channel(s) {missing} not found; available: {sorted(self.channels)}"
                    f"{'; static: ' + str(self.static_channels) if self.static_channels else ''}. "
                    "Fix the channel list (--channels spec.yaml)."
                )
            self.parts = [p[list(channels)] for p in self.parts]
        if static is not None:
            missing = [c for c in static if c not in self.static_channels]  # none when the source has no statics
            if missing:
                raise UsageError(
                    f"{where}: static field(s) {missing} not found; available: {self.static_channels or 'none'}"
                )
            self.static = self.static[list(static)] if static and self.static is not None else None
        return self


def detect_layout(path: str | os.PathLike[str]) -> str:
    """Guess the layout of ``path`` from its bytes and files (see module docstring); names never decide."""
    p = Path(path)
    if not p.exists():
        raise UsageError(f"{p}: no such file or folder")
    if p.is_file():
        kind = sniff(p)
        if kind == "grib":
            return "grib"
        if kind == "netcdf" and ((p.parent / "data.json").exists() or (p.parent / "metadata" / "data.json").exists()):
            return "makani"
        if kind in ("netcdf", "zip"):
            return "cds"
    elif (p / "zarr.json").exists() or (p / ".zgroup").exists():
        attrs = _zarr_attrs(p)
        if "sciml_contract" in attrs:
            return "canonical"
        return "wb2"
    elif (p / "data.json").exists() or (p / "metadata" / "data.json").exists():
        return "makani"
    else:
        kinds = {sniff(f) for f in p.iterdir() if f.is_file() and not f.name.startswith(".")} - {None}
        if kinds == {"grib"}:
            return "grib"
        if kinds:
            return "cds"
    raise UsageError(
        f"{p}: unknown data layout: not GRIB, NetCDF or a zip (by its first bytes), nor a zarr store (WeatherBench2 "
        "or sciml canonical) or a makani folder (data.json + YYYY.h5); "
        f"pass --layout {{{','.join(LAYOUTS)}}} to force one"
    )


def _zarr_attrs(p: Path) -> dict:
    try:
        if (p / "zarr.json").exists():
            return json.loads((p / "zarr.json").read_text()).get("attributes", {}) or {}
        if (p / ".zattrs").exists():
            return json.loads((p / ".zattrs").read_text())
    except (OSError, ValueError):
        pass
    return {}


def open_source(
    path: str | os.PathLike[str],
    layout: str | None = None,
    *,
    selection: Selection | None = None,
    allow_poleless: bool = False,
) -> Source:
    """Open ``path`` in any supported layout as a canonical :class:`Source`.

    ``selection`` picks ensemble members and ERA5 streams (GRIB/CDS input); ``allow_poleless`` also accepts the
    equiangular grid without poles (input of ``sciml data regrid``).
    """
    p = Path(path)
    layout = layout or detect_layout(p)
    if layout not in LAYOUTS:
        raise UsageError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    if not p.exists():
        raise UsageError(f"{p}: no such file or folder")
    if layout in ("cds", "grib"):
        src = _read_cds(p, selection or Selection(), allow_poleless, layout)
    else:
        reader = {"canonical": _read_canonical, "wb2": _read_wb2, "makani": _read_makani}[layout]
        src = reader(p, allow_poleless)
    _check_times(src)
    return src


def _check_times(src: Source) -> None:
    """Parts must not overlap and together form a regular axis (missing steps allowed)."""
    src.parts.sort(key=lambda d: d["time"].values[0])
    time_step(src.times.values, where=str(src.path))


def open_zarr(p: Path) -> xr.Dataset:
    """Open a zarr store lazily, with consolidated metadata when present (WB2 v2 stores) and without otherwise."""
    try:
        return xr.open_zarr(p, consolidated=True, chunks=None)
    except (KeyError, ValueError, FileNotFoundError):
        return xr.open_zarr(p, consolidated=False, chunks=None)


def ordered(ds: xr.Dataset) -> xr.Dataset:
    """Reorder the variables of a canonical store by its ``channels``/``static_channels`` attributes."""
    names = [*ds.attrs.get("channels", []), *ds.attrs.get("static_channels", [])]
    if names and sorted(names) == sorted(map(str, ds.data_vars)):
        return ds[names]
    return ds


def _split_static(ds: xr.Dataset) -> tuple[xr.Dataset, xr.Dataset | None]:
    static = [k for k, v in ds.data_vars.items() if "time" not in v.dims]
    if not static:
        return ds, None
    return ds.drop_vars(static), ds[static]


def _read_canonical(p: Path, allow_poleless: bool = False) -> Source:
    ds = ordered(open_zarr(p))
    ds = finalize_canonical(ds, where=str(p), allow_poleless=allow_poleless)
    dyn, static = _split_static(ds)
    return Source("canonical", p, [dyn], static)


def _flatten_levels(ds: xr.Dataset, level_map: dict[str, str], surface_map: dict[str, str], where: str) -> xr.Dataset:
    """Variables with a ``level`` dim -> one channel per level (``z500``); surface names -> contract names."""
    out: dict[str, xr.DataArray] = {}
    for name, var in ds.data_vars.items():
        name = str(name)
        if "level" in var.dims:
            short = level_map.get(name)
            if short is None:
                LOGGER.info("%s: skipping unknown pressure-level variable %r", where, name)
                continue
            for lev in var["level"].values:
                out[channel_name(short, int(lev))] = var.sel(level=lev, drop=True)
        elif name in surface_map:
            out[surface_map[name]] = var
        elif set(var.dims) <= {"member", "time", "lat", "lon"}:
            out[name] = var  # unknown single-level field: keep its own name
        else:
            LOGGER.info("%s: skipping variable %r with dims %s", where, name, var.dims)
    res = xr.Dataset(out)
    res.attrs = dict(ds.attrs)
    return res


def _read_wb2(p: Path, allow_poleless: bool = False) -> Source:
    where = str(p)
    ds = open_zarr(p)
    ds = ds.rename({k: v for k, v in {"latitude": "lat", "longitude": "lon"}.items() if k in ds.dims})
    static_vars = {}
    if "geopotential_at_surface" in ds:
        static_vars["orog"] = ds["geopotential_at_surface"] / GRAVITY
    if "land_sea_mask" in ds:
        static_vars["lsm"] = ds["land_sea_mask"]
    for k, v in list(static_vars.items()):
        if "time" in v.dims:
            static_vars[k] = v.isel(time=0, drop=True)
    ds = ds.drop_vars([v for v in ("geopotential_at_surface", "land_sea_mask") if v in ds])
    ds = _flatten_levels(ds, WB2_LEVEL_VARS, WB2_SURFACE_VARS, where)
    if "time" not in ds.dims:
        raise UsageError(f"{where}: no 'time' dimension in the WeatherBench2 store")
    dyn = finalize_canonical(ds, where=where, allow_poleless=allow_poleless)
    static = (
        finalize_canonical(xr.Dataset(static_vars), where=where, allow_poleless=allow_poleless) if static_vars else None
    )
    return Source("wb2", p, [dyn], static)


# ----------------------------------------------------------------------------------------------- CDS
def _data_files(p: Path) -> list[Path]:
    """The GRIB/NetCDF/zip files of a file or folder, recognised by their bytes (``.idx`` and notes skipped)."""
    if p.is_file():
        return [p]
    files = sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith(".") and sniff(f) is not None)
    if not files:
        raise UsageError(f"{p}: no GRIB, NetCDF or zip files in this folder")
    return files


def _cds_files(p: Path, cleanup: list) -> list[tuple[Path, str]]:
    """(file, display name) pairs for a GRIB/NetCDF file, a zip (whatever its name), or a folder of them."""
    files: list[tuple[Path, str]] = []
    for f in _data_files(p):
        if sniff(f) == "zip":
            tmp = tempfile.TemporaryDirectory(prefix="sciml-cds-")
            cleanup.append(tmp.cleanup)
            files += [(m, f"{f}:{m.name[4:]}") for m in zip_members(f, Path(tmp.name), str(f))]
        else:
            files.append((f, str(f)))
    return files


def _split_cds_static(ds: xr.Dataset, name: str) -> tuple[xr.Dataset, dict[str, xr.DataArray]]:
    """Surface geopotential and land-sea mask -> static ``orog``, ``lsm``; the rest flattened into channels."""
    static: dict[str, xr.DataArray] = {}
    for k in list(ds.data_vars):
        v = ds[k]
        if k == "z" and "level" not in v.dims:  # single-level 'z' is the surface geopotential
            static["orog"] = (v.isel(time=0, drop=True) if "time" in v.dims else v) / GRAVITY
            ds = ds.drop_vars(k)
        elif k == "lsm":
            static["lsm"] = v.isel(time=0, drop=True) if "time" in v.dims else v
            ds = ds.drop_vars(k)
    for k in static:
        if "member" in static[k].dims:
            static[k] = static[k].isel(member=0, drop=True)
    if "time" not in ds.dims and ds.data_vars:
        raise UsageError(f"{name}: no 'valid_time' (or 'time') dimension")
    return _flatten_levels(ds, CDS_LEVEL_VARS, CDS_SURFACE_VARS, name), static


def _read_cds(p: Path, sel: Selection, allow_poleless: bool = False, layout: str = "cds") -> Source:
    cleanup: list = []
    try:
        files = _cds_files(p, cleanup)
        groups: dict[tuple[str, ...], list[xr.Dataset]] = {}
        static: dict[str, xr.DataArray] = {}
        ref_grid: tuple[str, np.ndarray, np.ndarray] | None = None
        opened = [(ds, name) for f, name in files for ds in open_file(f, name)]
        for raw, name in opened:
            ds, st = _split_cds_static(normalize(raw, name, sel), name)
            lat, lon = ds["lat"].values, ds["lon"].values
            if ref_grid is None:
                ref_grid = (name, lat, lon)
            elif (
                lat.shape != ref_grid[1].shape
                or lon.shape != ref_grid[2].shape
                or not (np.allclose(lat, ref_grid[1]) and np.allclose(lon, ref_grid[2]))
            ):
                raise UsageError(
                    f"mixed grids: {name} is {lat.size}x{lon.size} ({lat[0]:g}..{lat[-1]:g}) but {ref_grid[0]} is "
                    f"{ref_grid[1].size}x{ref_grid[2].size} ({ref_grid[1][0]:g}..{ref_grid[1][-1]:g}); "
                    "download all files on one grid"
                )
            static.update(st)
            if ds.data_vars:
                ds = finalize_canonical(ds, where=name, allow_poleless=allow_poleless)
                ds.attrs["sciml_file"] = name
                groups.setdefault(tuple(sorted(map(str, ds.data_vars))), []).append(ds)
        parts = _align_groups(list(groups.values()), str(p))
        static_ds = (
            finalize_canonical(xr.Dataset(static), where=str(p), allow_poleless=allow_poleless) if static else None
        )
        return Source(layout, p, parts, static_ds, cleanup)
    except BaseException:
        for c in cleanup:
            c()
        raise


def _align_groups(groups: list[list[xr.Dataset]], where: str) -> list[xr.Dataset]:
    """Files grouped by variable set (e.g. monthly pressure-level files + one single-level file) -> lazy parts.

    Every group must cover the same time axis; parts are cut at every file boundary of every group, so each part
    takes one lazy slice of one file per group and nothing is loaded.
    """
    clash = _duplicate_vars(files[0] for files in groups)
    if clash:
        raise UsageError(f"{where}: variable(s) {clash} appear in files with different variable sets; keep one copy")
    axes = []
    for files in groups:
        files.sort(key=lambda d: d["time"].values[0])
        for f0, f1 in zip(files[:-1], files[1:], strict=True):
            if f1["time"].values[0] <= f0["time"].values[-1]:
                raise UsageError(
                    f"duplicated time steps: {f0.attrs.get('sciml_file')} and {f1.attrs.get('sciml_file')} overlap "
                    f"({pd.Timestamp(f1['time'].values[0])} .. {pd.Timestamp(f0['time'].values[-1])}); remove one"
                )
        axes.append(np.concatenate([f["time"].values for f in files]))
        time_step(axes[-1], where=f"{where} ({', '.join(map(str, files[0].data_vars))})")
    for files, ax in zip(groups[1:], axes[1:], strict=True):
        if ax.shape != axes[0].shape or not np.array_equal(ax, axes[0]):
            raise UsageError(
                f"{where}: variables {sorted(map(str, files[0].data_vars))} cover {ax.size} times "
                f"({pd.Timestamp(ax[0])} .. {pd.Timestamp(ax[-1])}) but "
                f"{sorted(map(str, groups[0][0].data_vars))} cover {axes[0].size} "
                f"({pd.Timestamp(axes[0][0])} .. {pd.Timestamp(axes[0][-1])}); download every variable for the same "
                "period"
            )
    starts = [np.cumsum([0] + [f.sizes["time"] for f in files]) for files in groups]
    cuts = sorted(set(np.concatenate(starts).tolist()))
    parts = []
    for a, b in zip(cuts[:-1], cuts[1:], strict=True):
        pieces = []
        for files, st in zip(groups, starts, strict=True):
            k = int(np.searchsorted(st, a, side="right") - 1)
            pieces.append(files[k].isel(time=slice(a - int(st[k]), b - int(st[k]))))
        parts.append(xr.merge(pieces, join="exact", combine_attrs="drop_conflicts"))
    return parts


def _duplicate_vars(dsets: Iterable[xr.Dataset]) -> list[str]:
    seen: set[str] = set()
    dup = []
    for d in dsets:
        for v in map(str, d.data_vars):
            if v in seen:
                dup.append(v)
            seen.add(v)
    return dup


# -------------------------------------------------------------------------------------------- makani
def _read_makani(p: Path, allow_poleless: bool = False) -> Source:
    root = p if p.is_dir() else p.parent
    meta_file = next((m for m in (root / "data.json", root / "metadata" / "data.json") if m.exists()), None)
    if meta_file is None:
        raise UsageError(f"{root}: makani layout needs data.json (or metadata/data.json) next to the YYYY.h5 files")
    try:
        meta = json.loads(meta_file.read_text())
        coords = meta["coords"]
        lat = np.asarray(coords["lat"], dtype=np.float64)
        lon = np.asarray(coords["lon"], dtype=np.float64)
        chans = [str(c) for c in coords["channel"]]
        dhours = float(meta["dhours"])
        h5_path = str(meta.get("h5_path", "fields"))
    except (KeyError, ValueError, TypeError) as exc:
        raise UsageError(
            f"{meta_file}: not a valid makani data.json ({exc}); need dhours and coords.lat/lon/channel"
        ) from None
    files = [p] if p.is_file() else sorted(f for f in root.glob("*.h5") if f.stem.isdigit())
    if not files:
        raise UsageError(f"{root}: no YYYY.h5 files")
    parts = []
    for f in files:
        ds = xr.open_dataset(f, engine="h5netcdf", phony_dims="sort", cache=False)
        if h5_path not in ds:
            raise UsageError(f"{f}: no dataset {h5_path!r} (data.json h5_path); it holds {list(ds.variables)}")
        arr = ds[h5_path]
        if arr.ndim != 4 or arr.shape[1:] != (len(chans), lat.size, lon.size):
            raise UsageError(
                f"{f}: {h5_path} has shape {arr.shape}; data.json says [time, {len(chans)}, {lat.size}, {lon.size}]"
            )
        tdim, cdim, ydim, xdim = arr.dims
        nt = arr.shape[0]
        if "timestamp" in ds.variables and ds["timestamp"].size == nt:
            times = pd.to_datetime(np.asarray(ds["timestamp"].values, dtype=np.float64), unit="s")
        else:
            start = pd.Timestamp(year=int(f.stem), month=1, day=1)
            times = start + pd.to_timedelta(np.arange(nt) * dhours, unit="h")
        valid = None
        if "valid_data" in ds.variables:
            valid = np.asarray(ds["valid_data"].values).astype(bool)
        arr = arr.drop_vars(list(arr.coords)).rename({tdim: "time", ydim: "lat", xdim: "lon"})
        out = {}
        for i, c in enumerate(chans):
            v = arr.isel({cdim: i}, drop=True)
            if valid is not None and not valid[:, i].all():
                v = v.where(xr.DataArray(valid[:, i], dims="time"))  # invalid steps become NaN (check reports)
            out[c] = v
        dsc = xr.Dataset(out).assign_coords(time=times, lat=lat, lon=lon)
        parts.append(finalize_canonical(dsc, where=str(f), allow_poleless=allow_poleless))
    return Source("makani", p, parts, None)


def source_segments(src: Source) -> np.ndarray:
    """Trajectory id per time step over all parts."""
    return np.concatenate([segments(p) for p in src.parts])
