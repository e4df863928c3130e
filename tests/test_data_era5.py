"""Real ERA5 files as users have them, from the cfgrib sample (tests/data/README.md): GRIB, the NetCDF cfgrib and
the CDS write, CDS zips (also under a .nc name), split folders, members, old-CDS expver; every converted value is
compared with the GRIB decoded directly by ecCodes. Also: statistics on 6-hourly, 12-hourly and daily data against
an independent numpy computation, spectral regridding of pole-less grids, and `sciml plot data`."""

from __future__ import annotations

import zipfile
from pathlib import Path

# the test extra installs sciml[grib]: without cfgrib/eccodes these tests must fail, not be skipped
import cfgrib  # noqa: F401
import eccodes
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from sciml.cli import main
from sciml.forecasting.data import open_source
from sciml.forecasting.data.readers import detect_layout

GRIB = Path(__file__).parent / "data" / "era5_members_z_t.grib"
CHANNELS = ["z850", "z500", "t850", "t500"]
SPEC_ORDER = ["t500", "z500", "t850", "z850"]


def ecmwf_decode(path: Path) -> dict:
    """{(member, valid time, channel): field north first} straight from ecCodes (no cfgrib, no xarray)."""
    out = {}
    with open(path, "rb") as fh:
        while (h := eccodes.codes_grib_new_from_file(fh)) is not None:
            try:
                g = {k: eccodes.codes_get(h, k) for k in ("number", "validityDate", "validityTime", "shortName")}
                level = eccodes.codes_get(h, "level")
                nj, ni = eccodes.codes_get(h, "Nj"), eccodes.codes_get(h, "Ni")
                vals = eccodes.codes_get_values(h).reshape(nj, ni)
                lat0 = eccodes.codes_get(h, "latitudeOfFirstGridPointInDegrees")
                lat1 = eccodes.codes_get(h, "latitudeOfLastGridPointInDegrees")
                if lat0 < lat1:  # south first on disk: flip so that row 0 is the north pole
                    vals = vals[::-1]
                t = pd.Timestamp(f"{g['validityDate']:08d}T{g['validityTime']:04d}")
                out[(int(g["number"]), t, f"{g['shortName']}{level}")] = vals
            finally:
                eccodes.codes_release(h)
    return out


@pytest.fixture(scope="module")
def ref() -> dict:
    return ecmwf_decode(GRIB)


def _cfgrib() -> xr.Dataset:
    return xr.open_dataset(GRIB, engine="cfgrib", backend_kwargs={"indexpath": ""}).load()


def _new_cds(ds: xr.Dataset, member: int | None = 0) -> xr.Dataset:
    """The new-CDS NetCDF layout: valid_time dimension, pressure_level, expver label per time."""
    if member is not None:
        ds = ds.sel(number=member)
    ds = ds.drop_vars(["valid_time", "step"]).rename(time="valid_time", isobaricInhPa="pressure_level")
    ds = ds.assign_coords(expver=("valid_time", ["0001"] * ds.sizes["valid_time"]))
    ds.attrs = {"GRIB_centre": "ecmf", "Conventions": "CF-1.7"}
    for v in ds.data_vars.values():
        v.attrs = {k: a for k, a in v.attrs.items() if k in ("units", "long_name")}
    return ds


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("era5")
    base = _cfgrib()
    out: dict[str, Path] = {"grib": GRIB}
    # NetCDF written from GRIB with cfgrib/xarray, as is (scalar step) and with time_dims (time, step)
    base.to_netcdf(root / "cfgrib.nc")
    out["cfgrib_nc"] = root / "cfgrib.nc"
    # forecast-style: dims number, time (start), step, isobaricInhPa and a 2-D valid_time(time, step)
    dims = ("number", "time", "step", "isobaricInhPa", "latitude", "longitude")
    fc = xr.Dataset(
        {v: (dims, base[v].values.reshape(2, 2, 2, 2, 61, 120), base[v].attrs) for v in ("z", "t")},
        coords={
            **{k: base[k] for k in ("number", "isobaricInhPa", "latitude", "longitude")},
            "time": pd.to_datetime(["2016-12-31T12", "2017-01-01T12"]),
            "step": pd.to_timedelta([12, 24], unit="h"),
        },
    )
    fc = fc.assign_coords(valid_time=fc["time"] + fc["step"])
    fc.to_netcdf(root / "cfgrib_step.nc")
    out["cfgrib_step_nc"] = root / "cfgrib_step.nc"
    new = _new_cds(base)
    new.to_netcdf(root / "cds.nc")
    out["cds_nc"] = root / "cds.nc"
    with zipfile.ZipFile(root / "cds.zip", "w") as zf:
        zf.write(root / "cds.nc", "data_stream-enda_stepType-instant.nc")
    out["cds_zip"] = root / "cds.zip"
    (root / "zip_named.nc").write_bytes((root / "cds.zip").read_bytes())
    out["zip_named_nc"] = root / "zip_named.nc"
    (root / "days").mkdir()
    for day, sub in new.groupby("valid_time.day"):
        sub.to_netcdf(root / "days" / f"era5_201701{day:02d}.nc")
    out["time_split"] = root / "days"
    (root / "vars").mkdir()
    for v in ("t", "z"):
        new[[v]].to_netcdf(root / "vars" / f"{v}.nc")
    out["var_split"] = root / "vars"
    # old CDS: an expver dimension, ERA5 (1) for the first day and ERA5T (5) for the second, NaN elsewhere
    plain = new.drop_vars("expver")
    first = plain["valid_time"].dt.day == 1
    old = xr.concat([plain.where(first), plain.where(~first)], dim="expver").assign_coords(expver=[1, 5])
    old.rename(valid_time="time", pressure_level="level").to_netcdf(root / "old_cds.nc")
    out["old_cds"] = root / "old_cds.nc"
    return out


def _convert(src: Path, dest: Path, *extra: str) -> xr.Dataset:
    assert main(["data", "convert", str(src), "--to", str(dest), *extra]) == 0
    return xr.open_zarr(dest, consolidated=False)


def _assert_matches_ecmwf(store: xr.Dataset, ref: dict, member: int = 0) -> None:
    assert store["lat"].values[0] == 90.0 and store["lat"].values[-1] == -90.0  # north first
    assert store["lon"].values[0] == 0.0 and np.all(np.diff(store["lon"].values) > 0)
    times = pd.DatetimeIndex(store["time"].values)
    assert list(times) == list(pd.date_range("2017-01-01", periods=4, freq="12h"))
    for c in CHANNELS:
        v = store[c]
        if "member" in v.dims:
            v = v.sel(member=member)
        for i, t in enumerate(times):
            # float32 rounding of ecCodes' float64 values is the only difference allowed
            np.testing.assert_array_equal(v.isel(time=i).values, ref[(member, t, c)].astype(np.float32), err_msg=c)


@pytest.mark.parametrize(
    ("name", "layout"),
    [
        ("grib", "grib"),
        ("cfgrib_nc", "cds"),
        ("cfgrib_step_nc", "cds"),
        ("cds_nc", "cds"),
        ("cds_zip", "cds"),
        ("zip_named_nc", "cds"),
        ("time_split", "cds"),
        ("var_split", "cds"),
        ("old_cds", "cds"),
    ],
)
def test_convert_matches_eccodes(name, layout, files, ref, tmp_path):
    """Every source converts; values equal ecCodes' decoding; spec order and provenance attributes kept."""
    assert detect_layout(files[name]) == layout  # by the bytes: the zip named .nc is still a zip
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"channels: [{', '.join(SPEC_ORDER)}]\n")
    member = ["--member", "0"] if name in ("grib", "cfgrib_nc", "cfgrib_step_nc") else []
    store = _convert(files[name], tmp_path / "s.zarr", "--channels", str(spec), *member)
    _assert_matches_ecmwf(store, ref)
    assert store.attrs["channels"] == SPEC_ORDER
    assert store.attrs["source_layout"] == layout
    assert store.attrs["converted_from"] == str(files[name])
    with open_source(tmp_path / "s.zarr") as src:
        assert src.channels == SPEC_ORDER
    for c in CHANNELS:
        assert store[c].attrs["units"] and store[c].attrs["long_name"]


def test_members_one_or_all(files, ref, tmp_path, capsys):
    assert main(["data", "convert", str(files["grib"]), "--to", str(tmp_path / "x.zarr")]) == 2
    err = capsys.readouterr().err
    assert str(files["grib"]) in err and "--member N" in err and "--member all" in err
    _assert_matches_ecmwf(_convert(files["grib"], tmp_path / "m1.zarr", "--member", "1"), ref, member=1)
    both = _convert(files["cfgrib_nc"], tmp_path / "all.zarr", "--member", "all")
    assert both["z500"].dims == ("member", "time", "lat", "lon") and list(both["member"].values) == [0, 1]
    for m in (0, 1):
        _assert_matches_ecmwf(both, ref, member=m)
    assert main(["data", "convert", str(files["grib"]), "--to", str(tmp_path / "y.zarr"), "--member", "7"]) == 2
    assert "no ensemble member 7" in capsys.readouterr().err
    assert main(["data", "convert", str(files["cds_nc"]), "--to", str(tmp_path / "z.zarr"), "--member", "1"]) == 2
    assert "holds only member 0" in capsys.readouterr().err
    assert main(["data", "stats", str(tmp_path / "all.zarr")]) == 2
    assert "--member N" in capsys.readouterr().err
    from sciml.errors import UsageError
    from sciml.forecasting.data import DataConfig, ForecastDataset

    with pytest.raises(UsageError, match="2 ensemble members.*--member N"):
        ForecastDataset(DataConfig(store=tmp_path / "all.zarr"))


def test_expver_pick_one_stream(files, ref, tmp_path, capsys):
    """--expver 5 keeps ERA5T only (NaN on the first day); an absent stream names the ones present."""
    s = _convert(files["old_cds"], tmp_path / "e5.zarr", "--expver", "5")
    assert np.isnan(s["z500"].isel(time=0).values).all()
    np.testing.assert_array_equal(
        s["z500"].isel(time=3).values, ref[(0, pd.Timestamp("2017-01-02T12"), "z500")].astype(np.float32)
    )
    assert main(["data", "convert", str(files["old_cds"]), "--to", str(tmp_path / "e.zarr"), "--expver", "3"]) == 2
    assert "no expver '3'" in capsys.readouterr().err


def test_regional_subset_message_uses_file_longitudes(files, tmp_path, capsys):
    ds = xr.open_dataset(files["cds_nc"]).load()
    ds = ds.assign_coords(longitude=((ds["longitude"] + 180) % 360) - 180).sortby("longitude")
    ds.sel(longitude=slice(-10, 40), latitude=slice(70, 30)).to_netcdf(tmp_path / "europe.nc")
    assert main(["data", "convert", str(tmp_path / "europe.nc"), "--to", str(tmp_path / "eu.zarr")]) == 2
    err = capsys.readouterr().err
    assert "europe.nc" in err and "-9 .. 39" in err and "global" in err and "351" not in err


def test_grib_without_cfgrib_and_junk_bytes(tmp_path, monkeypatch, capsys):
    import sys

    junk = tmp_path / "data.grib"
    junk.write_bytes(b"hello, not a weather file")
    assert main(["data", "check", str(junk)]) == 2
    assert "data.grib" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "cfgrib", None)  # import cfgrib -> ImportError
    assert main(["data", "check", str(GRIB), "--member", "0"]) == 2
    assert "pip install 'sciml[grib]'" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ statistics
def clenshaw_curtis(nlat: int) -> np.ndarray:
    """Clenshaw-Curtis weights on theta_k = k pi / N (N = nlat - 1), summing to 2, by the classic cosine sum."""
    n = nlat - 1
    theta = np.pi * np.arange(nlat) / n
    w = np.ones(nlat)
    for j in range(1, n // 2 + 1):
        b = 1.0 if 2 * j == n else 2.0
        w -= b * np.cos(2 * j * theta) / (4 * j * j - 1)
    c = np.full(nlat, 2.0)
    c[[0, -1]] = 1.0
    return c * w / n


def numpy_stats(x: np.ndarray, times: pd.DatetimeIndex, lag: pd.Timedelta, design: np.ndarray) -> dict:
    """Area-weighted mean/std and lag-difference mean/std per channel, least-squares climatology per point."""
    T, C, nlat, nlon = x.shape
    w = np.repeat(clenshaw_curtis(nlat)[:, None] / (2 * nlon), nlon, axis=1)
    wm = lambda a: (a * w).sum(axis=(-2, -1))  # noqa: E731
    mean = wm(x).mean(axis=0)
    std = np.sqrt(wm((x - mean[None, :, None, None]) ** 2).mean(axis=0))
    pos = {t: i for i, t in enumerate(times)}
    pairs = [(i, pos[t + lag]) for i, t in enumerate(times) if t + lag in pos]
    d = np.stack([x[j] - x[i] for i, j in pairs])
    dmean = wm(d).mean(axis=0)
    dstd = np.sqrt(wm((d - dmean[None, :, None, None]) ** 2).mean(axis=0))
    coef = np.linalg.lstsq(design, x.reshape(T, -1), rcond=None)[0].reshape(design.shape[1], C, nlat, nlon)
    return {"mean": mean, "std": std, "diff_mean": dmean, "diff_std": dstd, "clim": coef}


def _compare(st, x, times, lag, design, keep) -> None:
    ref = numpy_stats(x, times, lag, design)
    for k in ("mean", "std", "diff_mean", "diff_std"):
        np.testing.assert_allclose(getattr(st, k), ref[k], rtol=1e-9, atol=1e-9 * np.abs(x).max(), err_msg=k)
    np.testing.assert_allclose(st.clim[keep], ref["clim"], rtol=2e-6, atol=1e-6 * np.abs(x).max())
    assert not np.any(st.clim[~np.asarray(keep)])  # dropped terms: zero coefficient


@pytest.mark.parametrize("sampling", ["12h", "daily"])
def test_stats_follow_real_sampling(sampling, files, tmp_path, capsys):
    """12-hourly ERA5 (00/12 UTC): lag 12 h, sin(2 pi h/24) dropped; daily (00 UTC): lag 24 h, no diurnal terms."""
    src = files["cds_nc"]
    if sampling == "daily":
        ds = xr.open_dataset(src).load()
        ds.isel(valid_time=[0, 2]).to_netcdf(tmp_path / "daily.nc")
        src = tmp_path / "daily.nc"
    store = tmp_path / "s.zarr"
    _convert(src, store)
    assert main(["data", "stats", str(store)]) == 0
    out = capsys.readouterr().out
    from sciml.forecasting.data import NormStats

    st = NormStats.load(tmp_path / "s.stats.nc")
    with open_source(store) as s:
        x = np.stack([s.parts[0][c].values for c in s.channels], axis=1).astype(np.float64)
        times = s.times
    h = np.asarray(times.hour, dtype=float)
    if sampling == "12h":
        lag, keep = pd.Timedelta(hours=12), [True, True, False]
        design = np.stack([np.ones_like(h), np.cos(2 * np.pi * h / 24)], axis=1)
        assert st.diurnal and "sin(2pi h/24)" in out and "differences over 12 h" in out
    else:
        lag, keep = pd.Timedelta(hours=24), [True]
        design = np.ones((h.size, 1))
        assert not st.diurnal and "differences over 24 h" in out
    _compare(st, x, times, lag, design, keep)


def test_stats_six_hourly_and_refusals_before_the_pass(tmp_path, capsys):
    from sciml.errors import UsageError
    from sciml.forecasting.data import StatsConfig, compute_stats, source_from_dataset
    from sciml.forecasting.data.testing import synthetic_truth

    truth = synthetic_truth(nlat=9, nlon=16, steps=12)
    src = source_from_dataset(truth.drop_vars(["orog", "lsm"]))
    st = compute_stats(src)
    x = np.stack([truth[c].values for c in src.channels], axis=1).astype(np.float64)
    times = src.times
    d = 2 * np.pi * np.asarray(times.hour, dtype=float) / 24
    design = np.stack([np.ones_like(d), np.cos(d), np.sin(d)], axis=1)
    _compare(st, x, times, pd.Timedelta(hours=6), design, [True, True, True])
    assert st.attrs["diff_hours"] == 6
    # a lag that is not a multiple of the step: refused from the time axis, naming the step and the fix
    with pytest.raises(UsageError, match="not a multiple of the data's time step \\(6 h\\).*--diff-hours 6"):
        compute_stats(src, StatsConfig(diff_hours=9))
    one = source_from_dataset(truth.drop_vars(["orog", "lsm"]).isel(time=[0]))
    with pytest.raises(UsageError, match="1 time step"):
        compute_stats(one)


# ------------------------------------------------------------------------------------------------ regridding
@pytest.mark.parametrize("target", ["equiangular:33x64", "gaussian:32", "equiangular:65x128"])
def test_regrid_poleless_keeps_band_limited_field(target):
    """WB2's pole-less grids -> contract grid: fields of degree < nlat are reproduced to rounding."""
    from sciml.forecasting.data.grid import longitudes, poleless_latitudes
    from sciml.forecasting.data.regrid import SpectralRegridder, parse_target
    from sciml.forecasting.data.testing import random_harmonics

    g = parse_target(target)
    nlat = g.nlat - 1 if g.kind == "equiangular" else g.nlat  # WB2's 64x32 and 128x64 pole-less grids
    lat, lon = poleless_latitudes(nlat), longitudes(2 * nlat)
    R = SpectralRegridder(lat, 2 * nlat, g)
    assert R.lmax == nlat
    for degree in (3, nlat - 1):
        f = random_harmonics(lat, lon, degree, seed=degree)
        expected = random_harmonics(g.lat, g.lon, degree, seed=degree)
        np.testing.assert_allclose(R(f), expected, rtol=0, atol=1e-11 * np.abs(expected).max(), err_msg=str(degree))
    # beyond the band limit the rows cannot determine the field: the error is not at rounding level
    f = random_harmonics(lat, lon, nlat + 4, seed=1)
    expected = random_harmonics(g.lat, g.lon, nlat + 4, seed=1)
    assert np.abs(R(f) - expected).max() > 1e-6 * np.abs(expected).max()


def test_regrid_parse_errors():
    from sciml.errors import UsageError
    from sciml.forecasting.data.regrid import parse_target

    assert parse_target("gaussian:32").nlon == 64
    for bad in ("equiangular:33", "cubed:10", "gaussian:2x4"):
        with pytest.raises(UsageError, match="--to"):
            parse_target(bad)


def write_wb2_poleless(path: Path, steps: int = 48) -> Path:
    """A WeatherBench-2 style 64x32 'equiangular_conservative' zarr (ascending latitudes +-87.1875, no poles)."""
    rng = np.random.default_rng(0)
    lat = -90 + (np.arange(32) + 0.5) * 180 / 32
    lon = np.arange(64) * 360 / 64
    t = pd.date_range("2001-01-01", periods=steps, freq="6h")
    la, lo = np.radians(lat)[None, :, None], np.radians(lon)[None, None, :]
    ph = np.linspace(0, 3, steps)[:, None, None]
    noise = lambda s: s * rng.standard_normal((steps, 32, 64))  # noqa: E731
    fields = {
        "geopotential": 5.5e4 + 800 * np.sin(la) ** 2 + 300 * np.cos(la) * np.cos(lo - ph) + noise(10),
        "u_component_of_wind": 10 * np.cos(la) + 3 * np.sin(lo - ph) * np.cos(la) + noise(1),
        "v_component_of_wind": 3 * np.cos(lo - ph) * np.cos(la) + noise(1),
    }
    ds = xr.Dataset(
        {k: (("time", "level", "latitude", "longitude"), a[:, None].astype(np.float32)) for k, a in fields.items()},
        coords={"time": t, "level": [500], "latitude": lat, "longitude": lon},
    )
    ds.to_zarr(path, mode="w", zarr_format=2, consolidated=True)
    return path


def test_wb2_poleless_download_to_trained_tiny_model(tmp_path, capsys):
    """convert refuses with the regrid command; regrid -> stats -> train tiny runs without writing code."""
    wb2 = write_wb2_poleless(tmp_path / "wb2_64x32.zarr")
    assert main(["data", "convert", str(wb2), "--to", str(tmp_path / "x.zarr")]) == 2
    err = capsys.readouterr().err
    assert f"sciml data regrid {wb2} --to equiangular:33x64" in err
    store = tmp_path / "era5_33x64.zarr"
    assert main(["data", "regrid", str(wb2), "--to", "equiangular:33x64", "--out", str(store)]) == 0
    ds = xr.open_zarr(store, consolidated=False)
    assert ds.sizes["lat"] == 33 and ds["lat"].values[0] == 90.0 and ds.attrs["regridded_from"] == "poleless 32x64"
    assert ds.attrs["channels"] == ["z500", "u500", "v500"]
    assert main(["data", "stats", str(store)]) == 0
    run = tmp_path / "run"
    args = ["forecast", "train", "--config", "tiny", "--set", f"data.store={store}", "--out", str(run)]
    assert main([*args, "--max-steps", "2"]) == 0
    assert (run / "checkpoint.pt").exists()


# ------------------------------------------------------------------------------------------------ quick look
def test_plot_data_and_plot_forecast_on_a_store(files, tmp_path, capsys):
    out = tmp_path / "plots"
    assert main(["plot", "data", str(files["grib"]), "--member", "1", "--channel", "z500", "--out", str(out)]) == 0
    assert (out / "z500.png").stat().st_size > 10_000
    assert main(["plot", "data", str(files["grib"]), "--member", "1", "--time", "2018-01-01", "--out", str(out)]) == 2
    assert "2017-01-01 00:00:00 .. 2017-01-02 12:00:00" in capsys.readouterr().err
    store = tmp_path / "s.zarr"
    _convert(files["cds_nc"], store)
    assert main(["plot", "forecast", str(store), "--out", str(out)]) == 2
    assert "sciml plot data" in capsys.readouterr().err
