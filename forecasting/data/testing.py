"""Writers of small synthetic datasets in the exact on-disk layouts the readers accept (tests and examples).

:func:`synthetic_truth` makes canonical fields; :func:`write_wb2`, :func:`write_cds` and :func:`write_makani`
write the *same* values the way WeatherBench2, the Copernicus CDS and makani lay them out, so a test can assert
that every reader returns identical tensors.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from .grid import Grid
from .readers import GRAVITY

LEVELS = (500, 850)
LEVEL_VARS = {"z": "geopotential", "t": "temperature"}
SURFACE = {"t2m": ("2m_temperature", "t2m"), "u10m": ("10m_u_component_of_wind", "u10")}
CHANNELS = ("z500", "z850", "t500", "t850", "t2m", "u10m")


def synthetic_truth(
    nlat: int = 9,
    nlon: int = 16,
    steps: int = 12,
    start: str = "2001-12-31T00",
    seed: int = 0,
    grid: str = "equiangular",
) -> xr.Dataset:
    """Canonical dataset: 6-hourly random float32 fields for :data:`CHANNELS` plus static ``orog``, ``lsm``."""
    rng = np.random.default_rng(seed)
    g = Grid(grid, nlat, nlon)  # type: ignore[arg-type]
    times = pd.date_range(start, periods=steps, freq="6h")
    scale = {"z": 5e4, "t": 260.0, "t2m": 280.0, "u10m": 0.0}
    data: dict[str, tuple[tuple[str, ...], np.ndarray]] = {}
    for c in CHANNELS:
        base = scale.get(c, scale.get(c[0], 0.0))
        data[c] = (("time", "lat", "lon"), (base + rng.standard_normal((steps, nlat, nlon))).astype(np.float32))
    orog = (rng.random((nlat, nlon)) * 3000).astype(np.float32)
    data["orog"] = (("lat", "lon"), orog)
    data["lsm"] = (("lat", "lon"), (rng.random((nlat, nlon)) > 0.6).astype(np.float32))
    return xr.Dataset(data, coords={"time": times, "lat": g.lat, "lon": g.lon})


def write_wb2(truth: xr.Dataset, path: str | Path, *, ascending: bool = False) -> Path:
    """WeatherBench2 zarr (v2, consolidated): long names, ``level``, ``latitude``/``longitude``."""
    ds = truth.rename({"lat": "latitude", "lon": "longitude"})
    out: dict[str, tuple[tuple[str, ...], np.ndarray]] = {}
    for short, long in LEVEL_VARS.items():
        stack = np.stack([ds[f"{short}{lev}"].values for lev in LEVELS], axis=1)
        out[long] = (("time", "level", "latitude", "longitude"), stack)
    for c, (long, _) in SURFACE.items():
        out[long] = (("time", "latitude", "longitude"), ds[c].values)
    out["geopotential_at_surface"] = (("latitude", "longitude"), (ds["orog"].values.astype(np.float64) * GRAVITY))
    out["land_sea_mask"] = (("latitude", "longitude"), ds["lsm"].values)
    wb2 = xr.Dataset(
        out,
        coords={
            "time": ds["time"].values,
            "level": np.array(LEVELS, dtype=np.int64),
            "latitude": ds["latitude"].values,
            "longitude": ds["longitude"].values,
        },
    )
    if ascending:  # the WB2 HRES stores list latitude -90 -> 90
        wb2 = wb2.isel(latitude=slice(None, None, -1))
    wb2.to_zarr(path, mode="w", zarr_format=2, consolidated=True)
    return Path(path)


def _cds_dataset(truth: xr.Dataset, variables: list[str]) -> xr.Dataset:
    out: dict[str, tuple[tuple[str, ...], np.ndarray]] = {}
    levels = np.array(LEVELS, dtype=np.float64)
    coords = {
        "valid_time": truth["time"].values,
        "latitude": truth["lat"].values,
        "longitude": truth["lon"].values,
        "number": 0,
        "expver": ("valid_time", np.array(["0001"] * truth.sizes["time"])),
    }
    for v in variables:
        if v in LEVEL_VARS:
            stack = np.stack([truth[f"{v}{lev}"].values for lev in LEVELS], axis=1)
            out[v] = (("valid_time", "pressure_level", "latitude", "longitude"), stack)
            coords["pressure_level"] = levels
        elif v == "z_sfc":  # single-level geopotential (orography * g), as a time series like CDS delivers it
            z = (truth["orog"].values.astype(np.float64) * GRAVITY).astype(np.float32)
            out["z"] = (("valid_time", "latitude", "longitude"), np.broadcast_to(z, (truth.sizes["time"], *z.shape)))
        elif v == "lsm":
            lsm = truth["lsm"].values
            out["lsm"] = (
                ("valid_time", "latitude", "longitude"),
                np.broadcast_to(lsm, (truth.sizes["time"], *lsm.shape)),
            )
        else:
            canon = next(c for c, (_, short) in SURFACE.items() if short == v)
            out[v] = (("valid_time", "latitude", "longitude"), truth[canon].values)
    return xr.Dataset(out, coords=coords, attrs={"GRIB_centre": "ecmf", "Conventions": "CF-1.7"})


def write_cds(truth: xr.Dataset, folder: str | Path, *, as_zip: bool = False, split_time: bool = False) -> Path:
    """New-CDS NetCDF files: a pressure-level file and a single-level file (or a zip of per-stepType members).

    Returns the path to pass to the reader (the folder, or the zip file).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pl = _cds_dataset(truth, ["z", "t"])
    sl = _cds_dataset(truth, ["t2m", "u10", "z_sfc", "lsm"])
    files = []
    if split_time:
        n = truth.sizes["time"] // 2
        for i, sub in enumerate((pl.isel(valid_time=slice(0, n)), pl.isel(valid_time=slice(n, None)))):
            files.append((folder / f"pressure_levels_{i}.nc", sub))
    else:
        files.append((folder / "pressure_levels.nc", pl))
    files.append((folder / "single_levels.nc", sl))
    for f, ds in files:
        ds.to_netcdf(f, engine="h5netcdf")
    if not as_zip:
        return folder
    zpath = folder / "download.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for f, _ in files:
            name = "data_stream-oper_stepType-instant.nc" if f.name == "single_levels.nc" else f.name
            zf.write(f, arcname=name)
            f.unlink()
    return zpath


def write_makani(truth: xr.Dataset, folder: str | Path, invalid: tuple[tuple[int, int], ...] = ()) -> Path:
    """makani HDF5: one ``YYYY.h5`` per year with ``fields[time, channel, lat, lon]`` and a ``data.json``.

    ``invalid`` lists global (time index, channel index) pairs flagged 0 in ``valid_data``.
    """
    import h5py

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    times = pd.DatetimeIndex(truth["time"].values)
    for year in sorted(set(times.year)):
        sel = np.where(times.year == year)[0]
        fields = np.stack([truth[c].values[sel] for c in CHANNELS], axis=1)
        with h5py.File(folder / f"{year}.h5", "w") as f:
            d = f.create_dataset("fields", data=fields, chunks=(1, 1, *fields.shape[2:]))
            scales = {
                "timestamp": (times[sel] - pd.Timestamp("1970-01-01")).total_seconds().to_numpy(),
                "channel": np.array([c.encode() for c in CHANNELS]),
                "lat": truth["lat"].values,
                "lon": truth["lon"].values,
            }
            for i, (name, values) in enumerate(scales.items()):
                s = f.create_dataset(name, data=values)
                s.make_scale(name)
                d.dims[i].attach_scale(s)
            valid = np.ones((sel.size, len(CHANNELS)), dtype=np.int8)
            for t, c in invalid:
                if t in sel:
                    valid[int(np.where(sel == t)[0][0]), c] = 0
            f.create_dataset("valid_data", data=valid)
    meta = {
        "dataset_name": "synthetic",
        "h5_path": "fields",
        "dims": ["time", "channel", "lat", "lon"],
        "dhours": 6,
        "coords": {
            "grid_type": "equiangular",
            "lat": truth["lat"].values.tolist(),
            "lon": truth["lon"].values.tolist(),
            "channel": list(CHANNELS),
        },
    }
    (folder / "data.json").write_text(json.dumps(meta))
    return folder


def random_harmonics(lat: np.ndarray, lon: np.ndarray, lmax: int, seed: int = 0) -> np.ndarray:
    r"""A real field with unit-variance random coefficients on every spherical harmonic of degree ``l <= lmax``.

    .. math:: f(\theta, \lambda) = \sum_{l \le L} \sum_{m=0}^{l} \mathrm{Re}\,(a_{lm} Y_l^m(\theta, \lambda)),

    evaluated with :func:`scipy.special.sph_harm_y` (independent of the regridder's own Legendre recursion), so it
    is a closed-form reference with known band limit at any set of points (``lat``, ``lon`` in degrees).
    """
    from scipy.special import sph_harm_y

    rng = np.random.default_rng(seed)
    theta = np.radians(90.0 - np.asarray(lat, dtype=np.float64))
    phi = np.radians(np.asarray(lon, dtype=np.float64))
    f = np.zeros((theta.size, phi.size))
    for m in range(lmax + 1):
        l = np.arange(m, lmax + 1)[:, None]
        # Y_l^m(theta, phi) = Y_l^m(theta, 0) exp(i m phi): evaluate the latitude part once per (l, m)
        a = rng.standard_normal(l.shape) + 1j * rng.standard_normal(l.shape)
        column = (a * sph_harm_y(l, m, theta[None, :], 0.0)).sum(axis=0)
        f += np.real(column[:, None] * np.exp(1j * m * phi)[None, :])
    return f
