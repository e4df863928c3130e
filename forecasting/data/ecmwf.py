"""ECMWF files as users download them: GRIB, CDS NetCDF (new and old), cfgrib-written NetCDF, CDS zips.

The kind of a file is read from its first bytes, never from its name (a CDS zip saved as ``.nc`` is still a
zip): :func:`sniff`. :func:`open_file` opens one file (GRIB through ``cfgrib``, one dataset per GRIB hypercube;
NetCDF through h5netcdf/netCDF4) and :func:`normalize` maps every naming the ECMWF tools produce onto
``time, level, lat, lon`` (+ ``member``):

==========================  =====================================================================================
source                      what it looks like -> what we do
==========================  =====================================================================================
cfgrib (GRIB or its .nc)    ``time`` (start), ``step``, 2-D ``valid_time``, ``isobaricInhPa``, ``number`` ->
                            one axis ``valid_time``, ``level``
new CDS NetCDF (2024-)      ``valid_time`` dim, ``pressure_level``, ``number``, ``expver`` per time -> renamed
old CDS NetCDF              ``time``, ``level``, an ``expver`` *dimension* (ERA5 = 1, ERA5T = 5) with NaN where a
                            stream has no data -> merged: first non-missing value along ``expver``, as the CDS does
==========================  =====================================================================================

Ensemble members (``number``) are chosen with :class:`Selection` (``--member N|all``).
"""

from __future__ import annotations

import logging
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from sciml.errors import UsageError

LOGGER = logging.getLogger(__name__)

#: first bytes of each file kind
MAGIC = {
    b"GRIB": "grib",
    b"CDF\x01": "netcdf",
    b"CDF\x02": "netcdf",
    b"\x89HDF\r\n\x1a\n": "netcdf",  # NetCDF-4 is HDF5
    b"PK\x03\x04": "zip",
}
GRIB_FIX = "install the GRIB reader: pip install 'sciml[grib]' (cfgrib + the eccodes wheel)"


def sniff(path: Path) -> str | None:
    """``'grib'``, ``'netcdf'`` (NetCDF-3 or HDF5/NetCDF-4), ``'zip'`` or ``None`` from the file's first bytes."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError:
        return None
    for magic, kind in MAGIC.items():
        if head.startswith(magic):
            return kind
    return None


@dataclass(frozen=True)
class Selection:
    """Which ensemble member and which ERA5 stream (``expver``) to read.

    ``member``: ``None`` (the file must hold one member), an ensemble ``number`` to keep, or ``"all"`` (a
    ``member`` dimension is kept). ``expver``: ``"merge"`` (first non-missing along ``expver``, the CDS rule) or
    one experiment version such as ``"1"`` (ERA5) or ``"5"`` (ERA5T).
    """

    member: int | str | None = None
    expver: str = "merge"

    def __post_init__(self) -> None:
        if not (self.member is None or self.member == "all" or isinstance(self.member, int)):
            raise UsageError(f"--member must be an ensemble number or 'all', got {self.member!r}")


def parse_member(text: str | None) -> int | str | None:
    """CLI value of ``--member``: ``None``, ``'all'`` or an int."""
    if text is None or text == "all":
        return text
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"--member must be an ensemble number (0, 1, ...) or 'all', got {text!r}") from None


def open_file(f: Path, name: str) -> list[xr.Dataset]:
    """Open one GRIB or NetCDF file lazily; a GRIB file gives one dataset per hypercube (cfgrib)."""
    kind = sniff(f)
    if kind == "grib":
        try:
            import cfgrib
        except ImportError:
            raise UsageError(f"{name} is a GRIB file; {GRIB_FIX}") from None
        try:
            with warnings.catch_warnings():  # cfgrib's own xr.merge call warns about an xarray default change
                warnings.simplefilter("ignore", FutureWarning)
                # indexpath='': never write .idx files next to the user's data
                return list(cfgrib.open_datasets(str(f), backend_kwargs={"indexpath": ""}, cache=False))
        except Exception as exc:  # cfgrib/eccodes raise many types on corrupt input
            raise UsageError(f"{name}: GRIB file that ecCodes cannot decode ({exc}); download it again") from None
    if kind == "netcdf":
        for engine in ("h5netcdf", "netcdf4", "scipy"):
            try:
                return [xr.open_dataset(f, engine=engine, cache=False)]
            except (OSError, ValueError, ImportError, TypeError):
                continue
        raise UsageError(f"{name}: NetCDF/HDF5 header but no engine could open it; download it again")
    if kind == "zip":
        raise UsageError(f"{name}: a zip inside a zip; extract the outer archive first")
    raise UsageError(
        f"{name}: neither GRIB, NetCDF nor a zip (first bytes unknown); download the file again or pass the file "
        "the CDS delivered"
    )


def _drop_scalar_coords(ds: xr.Dataset, keep: tuple[str, ...] = ()) -> xr.Dataset:
    """cfgrib's scalar coordinates (``surface``, ``step``, ``heightAboveGround``, ...) say nothing we keep."""
    return ds.drop_vars([k for k, c in ds.coords.items() if c.ndim == 0 and k not in ds.dims and k not in keep])


def _valid_time_axis(ds: xr.Dataset, name: str) -> xr.Dataset:
    """Make ``valid_time`` (or ``time``) the one time dimension, whatever combination of time/step a file has."""
    if "valid_time" not in ds.variables:
        return ds
    vt = ds["valid_time"]
    if "valid_time" in ds.dims:  # new CDS: valid_time is the dimension; a stray 'time' variable is the start
        return ds.drop_vars([v for v in ("time", "step") if v in ds.variables and v not in ds.dims])
    if vt.ndim == 0:  # one time, no dimension
        ds = ds.drop_vars([v for v in ("time", "step") if v in ds.variables and v not in ds.dims])
        return ds.expand_dims(valid_time=[vt.values])
    dims = [d for d in ("time", "step") if d in vt.dims]
    if len(dims) == 1:
        return ds.swap_dims({dims[0]: "valid_time"}).drop_vars([v for v in ("time", "step") if v in ds.variables])
    # forecasts (accumulations): valid_time(time, step) -> one axis; each valid time must occur once
    flat = ds.stack(valid_time_=("time", "step"))
    values = vt.transpose("time", "step").values.ravel()
    flat = flat.drop_vars(["time", "step", "valid_time_", "valid_time"]).assign_coords(valid_time_=values)
    flat = flat.rename({"valid_time_": "valid_time"})
    ok = ~np.isnat(values)
    if not ok.all():
        flat = flat.isel(valid_time=np.flatnonzero(ok))
    if np.unique(flat["valid_time"].values).size != flat.sizes["valid_time"]:
        raise UsageError(
            f"{name}: forecasts whose valid times overlap (several steps reach the same time); download single "
            "forecast steps or the analysis instead"
        )
    return flat.sortby("valid_time")


def _merge_expver(ds: xr.Dataset, name: str, expver: str) -> xr.Dataset:
    """Old-CDS ``expver`` dimension: one stream, or the first non-missing value along it (the CDS merge)."""
    if "expver" not in ds.dims:
        return ds
    labels = [str(v).strip().lstrip("0") or "0" for v in np.asarray(ds["expver"].values).ravel()]
    if expver != "merge":
        want = expver.strip().lstrip("0") or "0"
        if want not in labels:
            raise UsageError(f"{name}: no expver {expver!r}; it has {labels}. Pass --expver merge or one of those")
        return ds.isel(expver=labels.index(want), drop=True)
    out = ds.isel(expver=0, drop=True)
    for k in range(1, ds.sizes["expver"]):
        out = out.fillna(ds.isel(expver=k, drop=True))
    LOGGER.info("%s: merged expver %s (first non-missing value wins)", name, labels)
    return out


def _select_member(ds: xr.Dataset, name: str, member: int | str | None) -> xr.Dataset:
    if "number" not in ds.dims:
        if isinstance(member, int) and "number" in ds.coords and int(ds["number"].values) != member:
            raise UsageError(f"{name}: holds only member {int(ds['number'].values)}, not {member}; fix --member")
        return ds.drop_vars([v for v in ("number",) if v in ds.variables])
    numbers = [int(n) for n in ds["number"].values]
    if member == "all":
        return ds.rename({"number": "member"})
    if member is None:
        if len(numbers) == 1:
            return ds.isel(number=0, drop=True)
        raise UsageError(
            f"{name}: holds {len(numbers)} ensemble members (number {numbers[0]}..{numbers[-1]}); pick one with "
            f"--member N or keep all with --member all"
        )
    if member not in numbers:
        raise UsageError(f"{name}: no ensemble member {member}; it has {numbers}. Fix --member")
    return ds.sel(number=member, drop=True)


def normalize(ds: xr.Dataset, name: str, sel: Selection) -> xr.Dataset:
    """Any ECMWF naming -> dims ``time, level, lat, lon`` (+ ``member``), with members and streams selected."""
    ren = {"isobaricInhPa": "level", "pressure_level": "level", "latitude": "lat", "longitude": "lon"}
    ds = _drop_scalar_coords(ds, keep=("number", "valid_time"))  # a lone member still says which one it is
    ds = _valid_time_axis(ds, name)
    ds = ds.rename({k: v for k, v in {**ren, "valid_time": "time"}.items() if k in ds.variables})
    ds = _merge_expver(ds, name, sel.expver)
    ds = ds.drop_vars([v for v in ("expver",) if v in ds.variables])  # new CDS: a label per time, not a dim
    ds = _select_member(ds, name, sel.member)
    return _drop_scalar_coords(ds)


def zip_members(zpath: Path, dest: Path, name: str) -> list[Path]:
    """Extract the data members of a zip (GRIB or NetCDF by their bytes) under our own flat names in ``dest``."""
    from pathlib import PurePosixPath

    out = []
    with zipfile.ZipFile(zpath) as zf:
        for i, info in enumerate(zf.infolist()):
            if info.is_dir():
                continue
            pure = PurePosixPath(info.filename.replace("\\", "/"))
            if pure.is_absolute() or ".." in pure.parts or (len(info.filename) > 1 and info.filename[1] == ":"):
                raise UsageError(
                    f"{name}: zip member {info.filename!r} would extract outside the target folder; refusing to "
                    "read this archive (re-download it from the CDS or extract the files yourself)"
                )
            target = dest / f"{i:03d}_{pure.name}"  # our own flat name: nothing from the archive picks the path
            with zf.open(info) as src, open(target, "wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
            if sniff(target) in ("grib", "netcdf"):
                out.append(target)
            else:
                target.unlink()
    if not out:
        raise UsageError(f"{name}: the zip holds no GRIB or NetCDF member")
    return out
