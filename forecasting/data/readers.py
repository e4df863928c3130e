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
    the ``.zip`` the CDS returns when instantaneous and accumulated fields are mixed.
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
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
import xarray as xr

from sciml.errors import UsageError

from .contract import channel_name, finalize_canonical, segments, time_step
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
            missing = [c for c in static if c not in self.static_channels]
            if missing:
                raise UsageError(
                    f"{where}: static field(s) {missing} not found; available: {self.static_channels or 'none'}"
                )
            self.static = self.static[list(static)] if static else None
        return self


def detect_layout(path: str | os.PathLike[str]) -> str:
    """Guess the layout of ``path`` from its files (see module docstring)."""
    p = Path(path)
    if not p.exists():
        raise UsageError(f"{p}: no such file or folder")
    if p.is_file():
        if p.suffix == ".zip":
            return "cds"
        if p.suffix in (".nc", ".nc4", ".netcdf"):
            return "cds"
        if p.suffix in (".h5", ".hdf5"):
            return "makani"
    elif (p / "zarr.json").exists() or (p / ".zgroup").exists():
        attrs = _zarr_attrs(p)
        if "sciml_contract" in attrs:
            return "canonical"
        return "wb2"
    elif (p / "data.json").exists() or (p / "metadata" / "data.json").exists():
        return "makani"
    elif any(p.glob("*.nc")) or any(p.glob("*.zip")):
        return "cds"
    raise UsageError(
        f"{p}: unknown data layout. Expected a zarr store (WeatherBench2 or sciml canonical), CDS NetCDF "
        "(.nc file, folder of .nc files or the CDS .zip), or a makani folder (data.json + YYYY.h5); "
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


def open_source(path: str | os.PathLike[str], layout: str | None = None) -> Source:
    """Open ``path`` in any supported layout as a canonical :class:`Source`."""
    p = Path(path)
    layout = layout or detect_layout(p)
    if layout not in LAYOUTS:
        raise UsageError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    if not p.exists():
        raise UsageError(f"{p}: no such file or folder")
    reader = {"canonical": _read_canonical, "wb2": _read_wb2, "cds": _read_cds, "makani": _read_makani}[layout]
    src = reader(p)
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


def _read_canonical(p: Path) -> Source:
    ds = ordered(open_zarr(p))
    ds = finalize_canonical(ds, where=str(p))
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
        elif set(var.dims) <= {"time", "lat", "lon"}:
            out[name] = var  # unknown single-level field: keep its own name
        else:
            LOGGER.info("%s: skipping variable %r with dims %s", where, name, var.dims)
    res = xr.Dataset(out)
    res.attrs = dict(ds.attrs)
    return res


def _read_wb2(p: Path) -> Source:
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
    dyn = finalize_canonical(ds, where=where)
    static = finalize_canonical(xr.Dataset(static_vars), where=where) if static_vars else None
    return Source("wb2", p, [dyn], static)


# ----------------------------------------------------------------------------------------------- CDS
def _safe_extract(zpath: Path, dest: Path) -> list[Path]:
    """Extract the ``.nc`` members of a CDS zip into ``dest``; refuse names that would escape it."""
    out = []
    with zipfile.ZipFile(zpath) as zf:
        for i, info in enumerate(zf.infolist()):
            if info.is_dir():
                continue
            name = info.filename
            pure = PurePosixPath(name.replace("\\", "/"))
            if pure.is_absolute() or ".." in pure.parts or (len(name) > 1 and name[1] == ":"):
                raise UsageError(
                    f"{zpath}: zip member {name!r} would extract outside the target folder; refusing to read this "
                    "archive (re-download it from the CDS or extract the .nc files yourself)"
                )
            if pure.suffix not in (".nc", ".nc4"):
                continue
            target = dest / f"{i:03d}_{pure.name}"  # our own flat name: nothing from the archive picks the path
            with zf.open(info) as src, open(target, "wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
            out.append(target)
    if not out:
        raise UsageError(f"{zpath}: the zip holds no .nc member")
    return out


def _cds_files(p: Path, cleanup: list) -> list[tuple[Path, str]]:
    """(file, display name) pairs for a .nc file, a .zip, or a folder of them."""
    if p.is_dir():
        items = sorted(p.glob("*.nc")) + sorted(p.glob("*.zip"))
    else:
        items = [p]
    files: list[tuple[Path, str]] = []
    for f in items:
        if f.suffix == ".zip":
            tmp = tempfile.TemporaryDirectory(prefix="sciml-cds-")
            cleanup.append(tmp.cleanup)
            files += [(m, f"{f}:{m.name[4:]}") for m in _safe_extract(f, Path(tmp.name))]
        else:
            files.append((f, str(f)))
    if not files:
        raise UsageError(f"{p}: no .nc or .zip files found")
    return files


def _open_nc(f: Path, name: str) -> xr.Dataset:
    for engine in ("h5netcdf", "netcdf4"):
        try:
            return xr.open_dataset(f, engine=engine, cache=False)
        except (OSError, ValueError):
            continue
    raise UsageError(f"{name}: cannot be read as NetCDF (neither h5netcdf nor netCDF4 could open it)")


def _normalize_cds(ds: xr.Dataset, name: str) -> tuple[xr.Dataset, dict[str, xr.DataArray]]:
    ren = {"valid_time": "time", "pressure_level": "level", "latitude": "lat", "longitude": "lon"}
    ds = ds.rename({k: v for k, v in ren.items() if k in ds.variables})
    if "number" in ds.dims:
        if ds.sizes["number"] != 1:
            raise UsageError(
                f"{name}: holds {ds.sizes['number']} ensemble members (dim 'number'); select one member before "
                "converting"
            )
        ds = ds.isel(number=0)
    ds = ds.drop_vars([c for c in ("number", "expver") if c in ds.variables])
    static: dict[str, xr.DataArray] = {}
    for k in list(ds.data_vars):
        v = ds[k]
        if k == "z" and "level" not in v.dims:  # single-level 'z' is the surface geopotential
            static["orog"] = (v.isel(time=0, drop=True) if "time" in v.dims else v) / GRAVITY
            ds = ds.drop_vars(k)
        elif k == "lsm":
            static["lsm"] = v.isel(time=0, drop=True) if "time" in v.dims else v
            ds = ds.drop_vars(k)
    if "time" not in ds.dims and ds.data_vars:
        raise UsageError(f"{name}: no 'valid_time' (or 'time') dimension")
    return _flatten_levels(ds, CDS_LEVEL_VARS, CDS_SURFACE_VARS, name), static


def _read_cds(p: Path) -> Source:
    cleanup: list = []
    try:
        files = _cds_files(p, cleanup)
        groups: dict[tuple[str, ...], list[xr.Dataset]] = {}
        static: dict[str, xr.DataArray] = {}
        ref_grid: tuple[str, np.ndarray, np.ndarray] | None = None
        for f, name in files:
            ds, st = _normalize_cds(_open_nc(f, name), name)
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
                ds = finalize_canonical(ds, where=name)
                ds.attrs["sciml_file"] = name
                groups.setdefault(tuple(sorted(map(str, ds.data_vars))), []).append(ds)
        parts = _align_groups(list(groups.values()), str(p))
        st = finalize_canonical(xr.Dataset(static), where=str(p)) if static else None
        return Source("cds", p, parts, st, cleanup)
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
def _read_makani(p: Path) -> Source:
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
        parts.append(finalize_canonical(dsc, where=str(f)))
    return Source("makani", p, parts, None)


def source_segments(src: Source) -> np.ndarray:
    """Trajectory id per time step over all parts."""
    return np.concatenate([segments(p) for p in src.parts])
