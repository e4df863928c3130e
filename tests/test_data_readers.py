"""Readers: the same synthetic fields written as WB2 zarr, CDS NetCDF (files, zip) and makani HDF5 read back
identically, in canonical orientation; and every bad-input case gives a UsageError that names the problem."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from sciml.cli import main
from sciml.errors import UsageError
from sciml.forecasting.data import detect_layout, finalize_canonical, open_source
from sciml.forecasting.data.testing import CHANNELS, synthetic_truth, write_cds, write_makani, write_wb2


@pytest.fixture(scope="module")
def truth() -> xr.Dataset:
    return synthetic_truth()


@pytest.fixture(scope="module")
def sources(truth, tmp_path_factory):
    root = tmp_path_factory.mktemp("layouts")
    return {
        "wb2": write_wb2(truth, root / "wb2.zarr"),
        "wb2_ascending": write_wb2(truth, root / "wb2_asc.zarr", ascending=True),
        "cds": write_cds(truth, root / "cds", split_time=True),
        "cds_zip": write_cds(truth, root / "cdszip", as_zip=True),
        "makani": write_makani(truth, root / "makani"),
    }


def _read(path, layout=None) -> xr.Dataset:
    with open_source(path, layout) as src:
        return src.dataset().load()


@pytest.mark.parametrize("name", ["wb2", "wb2_ascending", "cds", "cds_zip", "makani"])
def test_reader_matches_truth_exactly(name, sources, truth):
    expected_layout = {"wb2_ascending": "wb2", "cds_zip": "cds"}.get(name, name)
    assert detect_layout(sources[name]) == expected_layout
    ds = _read(sources[name])
    # canonical orientation: latitude strictly descending from the north pole, longitude ascending from 0
    assert ds["lat"].values[0] == 90.0 and ds["lat"].values[-1] == -90.0
    assert np.all(np.diff(ds["lat"].values) < 0) and ds["lon"].values[0] == 0.0
    assert list(ds["time"].values) == list(truth["time"].values)
    for c in CHANNELS:  # same float32 values, bit for bit: channel mapping and orientation are right
        assert ds[c].dtype == np.float32 and ds[c].dims == ("time", "lat", "lon")
        np.testing.assert_array_equal(ds[c].values, truth[c].values, err_msg=f"{name}:{c}")
        assert ds[c].attrs["units"] and ds[c].attrs["long_name"]
    if name != "makani":  # makani data carry no static fields
        # orography goes through geopotential (x g, / g) in float64: equal to float32 rounding
        np.testing.assert_allclose(ds["orog"].values, truth["orog"].values, rtol=1e-6)
        np.testing.assert_array_equal(ds["lsm"].values, truth["lsm"].values)


def test_all_layouts_give_identical_tensors(sources):
    import torch

    stacks = {}
    for name in ("wb2", "cds_zip", "makani"):
        ds = _read(sources[name])
        stacks[name] = torch.from_numpy(np.stack([ds[c].values for c in CHANNELS], axis=1))
    assert torch.equal(stacks["wb2"], stacks["cds_zip"]) and torch.equal(stacks["wb2"], stacks["makani"])


def test_layout_override_and_unknown_layout(sources, tmp_path):
    assert _read(sources["wb2"], layout="wb2")["z500"].shape == (12, 9, 16)
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("hello")
    with pytest.raises(UsageError, match="unknown data layout.*--layout"):
        detect_layout(junk)
    with pytest.raises(UsageError, match="unknown layout"):
        open_source(sources["wb2"], layout="nope")


def test_missing_channel_lists_available(sources):
    with open_source(sources["wb2"]) as src, pytest.raises(UsageError, match=r"q700.*available.*z500"):
        src.select(["z500", "q700"])


def test_longitudes_from_minus_180_are_wrapped(truth):
    shifted = truth.roll(lon=8, roll_coords=True)
    shifted = shifted.assign_coords(lon=np.where(shifted.lon >= 180, shifted.lon - 360, shifted.lon))
    ds = finalize_canonical(shifted)
    np.testing.assert_array_equal(ds["lon"].values, truth["lon"].values)
    np.testing.assert_array_equal(ds["t2m"].values, truth["t2m"].values)


@pytest.mark.parametrize(
    ("hours", "match"),
    [([0, 6, 6, 12], "duplicated time"), ([0, 6, 12, 20], "irregular time axis")],
)
def test_bad_time_axes(truth, tmp_path, hours, match):
    t = pd.Timestamp("2001-01-01") + pd.to_timedelta(hours, unit="h")
    bad = truth.isel(time=slice(0, 4)).assign_coords(time=t)
    path = write_wb2(bad, tmp_path / "bad.zarr")
    with pytest.raises(UsageError, match=match):
        open_source(path)


def test_missing_steps_are_allowed_and_counted(truth, tmp_path):
    from sciml.forecasting.data.contract import time_step

    gap = truth.isel(time=[0, 1, 2, 5, 6])
    step, missing = time_step(gap["time"].values)
    assert step == pd.Timedelta(hours=6) and missing == 2


def test_grid_without_poles_is_rejected(truth):
    lat = np.linspace(80, -80, truth.sizes["lat"])
    with pytest.raises(UsageError, match="neither an equiangular grid with poles.*WITHOUT poles"):
        finalize_canonical(truth.assign_coords(lat=lat))


def test_mixed_grids_across_cds_files(truth, tmp_path):
    write_cds(truth, tmp_path)
    coarse = synthetic_truth(nlat=5, nlon=8)
    write_cds(coarse, tmp_path / "other")
    (tmp_path / "other" / "single_levels.nc").rename(tmp_path / "z_single_levels_coarse.nc")
    with pytest.raises(UsageError, match=r"mixed grids: .*z_single_levels_coarse.nc is 5x8"):
        open_source(tmp_path)


def test_overlapping_cds_files_are_duplicates(truth, tmp_path):
    write_cds(truth.isel(time=slice(0, 6)), tmp_path / "a")
    write_cds(truth.isel(time=slice(4, 10)), tmp_path / "b")
    for sub in ("a", "b"):
        for f in (tmp_path / sub).glob("*.nc"):
            f.rename(tmp_path / f"{sub}_{f.name}")
    with pytest.raises(UsageError, match="duplicated time steps"):
        open_source(tmp_path, layout="cds")


def test_zip_slip_member_is_refused(truth, tmp_path):
    folder = write_cds(truth, tmp_path / "src")
    zpath = tmp_path / "work" / "evil.zip"
    zpath.parent.mkdir()
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.write(folder / "pressure_levels.nc", arcname="../../escaped.nc")
    before = set(tmp_path.rglob("*"))
    with pytest.raises(UsageError, match=r"'\.\./\.\./escaped\.nc' would extract outside"):
        open_source(zpath)
    assert set(tmp_path.rglob("*")) == before and not (tmp_path.parent / "escaped.nc").exists()


def test_cds_ensemble_members_are_rejected(truth, tmp_path):
    ds = xr.Dataset({"t2m": (("number", "valid_time", "latitude", "longitude"), np.zeros((2, 3, 9, 16), "f4"))})
    ds = ds.assign_coords(
        number=[0, 1], valid_time=truth.time.values[:3], latitude=truth.lat.values, longitude=truth.lon.values
    )
    ds.to_netcdf(tmp_path / "ens.nc", engine="h5netcdf")
    with pytest.raises(UsageError, match="2 ensemble members"):
        open_source(tmp_path / "ens.nc")


def test_cli_convert_check_and_errors(sources, tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text("channels: [t850, z500]\nstatic: [lsm]\n")
    out = tmp_path / "canon.zarr"
    assert main(["-q", "data", "convert", str(sources["cds_zip"]), "--to", str(out), "--channels", str(spec)]) == 0
    capsys.readouterr()
    assert main(["data", "check", str(out), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["layout"] == "canonical" and rep["channels"] == ["t850", "z500"] and rep["static"] == ["lsm"]
    assert rep["grid"] == {"kind": "equiangular", "nlat": 9, "nlon": 16}
    assert rep["time"]["step_hours"] == 6 and rep["time"]["missing_steps"] == 0 and rep["nan_total"] == 0
    # an existing store is never overwritten silently; a bad spec names the missing channel
    assert main(["data", "convert", str(sources["wb2"]), "--to", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    spec.write_text("channels: [q700]\n")
    assert (
        main(["data", "convert", str(sources["wb2"]), "--to", str(tmp_path / "x.zarr"), "--channels", str(spec)]) == 2
    )
    err = capsys.readouterr().err
    assert "q700" in err and "available" in err and not (tmp_path / "x.zarr").exists()


def test_check_reports_nan_counts(truth, tmp_path, capsys):
    bad = truth.copy(deep=True)
    bad["t850"].values[3, 2, 5] = np.nan
    bad["t850"].values[7, 0, 0] = np.nan
    path = write_wb2(bad, tmp_path / "nan.zarr")
    assert main(["data", "check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "layout    wb2" in out and "NaN       2 in total: t850=2" in out


def test_convert_is_atomic(sources, tmp_path, monkeypatch):
    """A crash in the middle of writing leaves neither the final store nor a temporary one."""
    from sciml.forecasting.data import store

    calls = {"n": 0}
    real = xr.Dataset.to_zarr

    def flaky(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(xr.Dataset, "to_zarr", flaky)
    with open_source(sources["makani"]) as src, pytest.raises(OSError, match="disk full"):
        store.write_store(src, tmp_path / "out.zarr", time_block=4)
    assert calls["n"] == 2 and list(tmp_path.iterdir()) == []


def test_shipped_dataset_specs_load(tmp_path):
    from pathlib import Path

    from sciml.config import ConfigError
    from sciml.forecasting.data import load_spec

    root = Path(__file__).resolve().parents[1] / "data" / "specs"
    fcn3 = load_spec(root / "fcn3_72.yaml")
    assert len(fcn3.channels) == 72 and fcn3.channels[:7] == ("u10m", "v10m", "u100m", "v100m", "t2m", "msl", "tcwv")
    assert fcn3.channels[7] == "u50" and fcn3.channels[-1] == "q1000" and fcn3.static == ("orog", "lsm")
    assert load_spec(root / "swe.yaml").channels == ("z500", "u500", "v500")
    bad = tmp_path / "bad.yaml"
    bad.write_text("channels: [z500]\nchanels: [t850]\n")
    with pytest.raises(ConfigError, match="unknown key chanels"):
        load_spec(bad)


def test_makani_invalid_steps_become_nan(truth, tmp_path, capsys):
    """valid_data[t, c] == 0 marks a missing field: it reads as NaN and `check` counts it."""
    path = write_makani(truth, tmp_path / "mk", invalid=((5, 2),))  # t500 at the 6th step (second file)
    ds = _read(path)
    assert np.isnan(ds["t500"].values[5]).all() and not np.isnan(ds["t500"].values[4]).any()
    np.testing.assert_array_equal(ds["z500"].values, truth["z500"].values)
    assert main(["data", "check", str(path), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["layout"] == "makani" and rep["nan_counts"]["t500"] == 9 * 16 and rep["nan_total"] == 9 * 16
