"""Grids, quadrature weights, statistics and time features against closed forms and published almanac values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from sciml.errors import UsageError
from sciml.forecasting.data import Grid, NormStats, StatsConfig, compute_stats, detect_grid, source_from_dataset
from sciml.forecasting.data.features import CosZenith, DayOfYear, cos_zenith, solar_declination_and_eot


@pytest.mark.parametrize(
    ("kind", "th_grid", "nlat"),
    [("equiangular", "equiangular", 64), ("equiangular", "equiangular", 33), ("gaussian", "legendre-gauss", 32)],
)
def test_grid_latitudes_are_torch_harmonics_nodes(kind, th_grid, nlat):
    """The dataset latitudes are exactly the nodes of the model's torch-harmonics grid (64 even: poles included)."""
    from torch_harmonics.quadrature import precompute_latitudes

    colat, _ = precompute_latitudes(nlat, grid=th_grid)
    g = Grid(kind, nlat, 2 * nlat)
    np.testing.assert_allclose(g.lat, 90.0 - np.degrees(colat.numpy()), rtol=0, atol=1e-12)
    assert detect_grid(g.lat, g.lon) == g
    if kind == "equiangular":
        assert g.lat[0] == 90.0 and g.lat[-1] == -90.0


@pytest.mark.parametrize(("kind", "nlat", "degree"), [("equiangular", 33, 32), ("gaussian", 16, 31)])
def test_quadrature_weights_are_exact(kind, nlat, degree):
    """Sum w = 1; the mean of sin^2(lat) over the sphere is 1/3; P_l(sin lat) integrates to 0 up to the exact degree."""
    g = Grid(kind, nlat, 8)
    w = g.quadrature_weights()
    s = np.sin(np.radians(g.lat))[:, None]
    assert w.sum() == pytest.approx(1.0, abs=1e-14)
    assert (w * s**2).sum() == pytest.approx(1.0 / 3.0, abs=1e-14)
    for l in range(1, degree + 1):
        p = np.polynomial.legendre.Legendre.basis(l)(s)
        assert abs((w * p).sum()) < 1e-13, l


def _analytic(times, seg=None):
    """Two channels with closed-form area statistics.

    a = 7 + s_t sqrt(3) sin(lat):      mean 7, std 1 (E[sin^2] = 1/3), consecutive diffs +-2 sqrt(3) sin -> std 2
    b = s_t 3 cos(lat) cos(lon):       mean 0, std sqrt(9 * 1/3) = sqrt(3), diffs std 2 sqrt(3)
    with s_t alternating +1/-1 inside each segment.
    """
    g = Grid("equiangular", 17, 32)
    lat, lon = np.radians(g.lat)[:, None], np.radians(g.lon)[None, :]
    seg = np.zeros(len(times), int) if seg is None else np.asarray(seg)
    s = np.empty(len(times))
    for k in np.unique(seg):
        idx = np.where(seg == k)[0]
        s[idx] = (-1.0) ** np.arange(idx.size) * (1 if k % 2 == 0 else -1)
    a = 7 + s[:, None, None] * np.sqrt(3) * np.sin(lat) + 0 * lon
    b = s[:, None, None] * 3 * np.cos(lat) * np.cos(lon)
    ds = xr.Dataset(
        {"a": (("time", "lat", "lon"), a.astype(np.float32)), "b": (("time", "lat", "lon"), b.astype(np.float32))},
        coords={"time": times, "lat": g.lat, "lon": g.lon, "segment": ("time", seg)},
    )
    return ds


def test_stats_match_closed_form_and_skip_segment_boundaries():
    times = pd.date_range("2001-01-01", periods=8, freq="6h")
    # segment boundary between t3 and t4: s = +-1 alternates inside each segment, but t3 -> t4 has equal sign,
    # so a difference across the boundary would be 0 and pull diff_std below 2
    ds = _analytic(times, seg=[0, 0, 0, 0, 1, 1, 1, 1])
    st = compute_stats(source_from_dataset(ds), StatsConfig(harmonics=0, diurnal=False))
    np.testing.assert_allclose(st.mean, [7.0, 0.0], atol=2e-6)
    np.testing.assert_allclose(st.std, [1.0, np.sqrt(3)], rtol=2e-6)
    np.testing.assert_allclose(st.diff_mean, [0.0, 0.0], atol=2e-6)
    np.testing.assert_allclose(st.diff_std, [2.0, 2 * np.sqrt(3)], rtol=2e-6)
    assert st.attrs["n_samples"] == 8 and st.attrs["n_diff_pairs"] == 6
    # a hand computation with the same weights, written independently as a double loop
    w = Grid("equiangular", 17, 32).quadrature_weights()
    x = ds["a"].values.astype(np.float64)
    m = sum((w * x[t]).sum() for t in range(8)) / 8
    v = sum((w * (x[t] - m) ** 2).sum() for t in range(8)) / 8
    assert st.mean[0] == pytest.approx(m, rel=1e-12) and st.std[0] == pytest.approx(np.sqrt(v), rel=1e-9)


def test_stats_time_range_missing_steps_and_nan():
    times = pd.date_range("2001-01-01", periods=10, freq="6h")
    ds = _analytic(times).isel(time=[0, 1, 2, 3, 5, 6, 7, 8, 9])  # t4 missing: pair (t3, t5) is 12 h apart
    st = compute_stats(source_from_dataset(ds), StatsConfig(harmonics=0, diurnal=False, end="2001-01-02T12"))
    assert st.attrs["n_samples"] == 6 and st.attrs["n_diff_pairs"] == 4  # t0-1, t1-2, t2-3, t5-6
    np.testing.assert_allclose(st.diff_std, [2.0, 2 * np.sqrt(3)], rtol=2e-6)
    ds["a"].values[2, 3, 4] = np.nan
    with pytest.raises(UsageError, match=r"NaN/inf values in \['a'\]"):
        compute_stats(source_from_dataset(ds))
    with pytest.raises(UsageError, match="no time steps between"):
        compute_stats(source_from_dataset(ds), StatsConfig(start="2005-01-01"))


def test_climatology_recovers_harmonics_and_roundtrips(tmp_path):
    """A field made of the regressors is recovered exactly; the file round-trips and gives (1, C, 1, 1) tensors."""
    times = pd.date_range("2001-01-01", "2002-12-31T18", freq="6h")
    g = Grid("equiangular", 5, 8)
    d = (times.day_of_year - 1 + times.hour / 24).to_numpy()
    om = 2 * np.pi / 365.25
    amp = np.linspace(1, 2, 5)[:, None] * np.ones((1, 8))
    sig = 5 + 2 * np.cos(om * d) + 3 * np.sin(2 * om * d) + 0.5 * np.cos(2 * np.pi * times.hour.to_numpy() / 24)
    x = sig[:, None, None] * amp[None]
    ds = xr.Dataset(
        {"z500": (("time", "lat", "lon"), x.astype(np.float32))}, coords={"time": times, "lat": g.lat, "lon": g.lon}
    )
    st = compute_stats(source_from_dataset(ds), StatsConfig(harmonics=3, diurnal=True))
    path = st.save(tmp_path / "s.stats.nc")
    st2 = NormStats.load(path)
    probe = pd.DatetimeIndex(["2003-03-01T06", "2003-07-15T18"])
    dp = (probe.day_of_year - 1 + probe.hour / 24).to_numpy()
    want = 5 + 2 * np.cos(om * dp) + 3 * np.sin(2 * om * dp) + 0.5 * np.cos(2 * np.pi * probe.hour.to_numpy() / 24)
    clim = st2.climatology(probe, ["z500"], (slice(1, 3), slice(2, 5)))
    np.testing.assert_allclose(clim[:, 0], want[:, None, None] * amp[None, 1:3, 2:5], rtol=1e-5)
    t = st2.tensors()
    assert t["mean"].shape == (1, 1, 1, 1) and float(t["std"]) == pytest.approx(st.std[0], rel=1e-6)
    # less than a year: only the mean (and diurnal) terms are fitted
    short = compute_stats(source_from_dataset(ds.isel(time=slice(0, 40))))
    assert short.harmonics == 0 and short.clim.shape[0] == 3


def test_solar_geometry_against_almanac():
    """Declination at the 2021 solstices is +-23.44 deg; equation of time -14.2 min (11 Feb), +16.4 min (3 Nov)."""
    t = pd.DatetimeIndex(["2021-06-21T12", "2021-12-21T12", "2021-02-11T12", "2021-11-03T12"])
    decl, eot = solar_declination_and_eot(t)
    np.testing.assert_allclose(np.degrees(decl[:2]), [23.44, -23.44], atol=0.06)
    np.testing.assert_allclose(eot[2:], [-14.2, 16.4], atol=0.6)


def test_cos_zenith_mean_insolation_is_one_quarter():
    """The sphere-mean of max(cos z, 0) is exactly 1/4 (a disc's shadow over a sphere's area) at any time."""
    g = Grid("equiangular", 361, 720)
    w = g.quadrature_weights()
    cz = cos_zenith(pd.DatetimeIndex(["2021-03-20T09:37", "2021-06-21T00"]), g.lat, g.lon)
    assert cz.max() <= 1.0 and cz.max() > 0.9999
    for k in range(2):
        assert (w * np.maximum(cz[k], 0)).sum() == pytest.approx(0.25, abs=2e-4)
    f = CosZenith()(pd.DatetimeIndex(["2021-01-01"]).values, g.lat[:3], g.lon[:4])
    assert f.shape == (1, 1, 3, 4) and f.dtype == np.float32
    doy = DayOfYear()(pd.DatetimeIndex(["2021-01-01"]).values, g.lat[:3], g.lon[:4])
    np.testing.assert_allclose(doy[0, :, 0, 0], [1.0, 0.0], atol=1e-7)


def test_stats_cli_writes_beside_the_store(tmp_path, capsys):
    from sciml.cli import main
    from sciml.forecasting.data import open_source, stats_path
    from sciml.forecasting.data.testing import synthetic_truth, write_wb2

    truth = synthetic_truth(steps=8)
    path = write_wb2(truth, tmp_path / "era.zarr")
    assert main(["-q", "data", "stats", str(path), "--end", "2002-01-01T06"]) == 0
    assert "z500" in capsys.readouterr().out and stats_path(path) == tmp_path / "era.stats.nc"
    st = NormStats.load(stats_path(path))
    with open_source(path) as src:
        ref = compute_stats(src, StatsConfig(end="2002-01-01T06"))
    np.testing.assert_array_equal(st.mean, ref.mean)
    np.testing.assert_array_equal(st.diff_std, ref.diff_std)
    assert st.attrs["n_samples"] == 6 and st.static_channels == ("orog", "lsm")
    w = Grid("equiangular", 9, 16).quadrature_weights()
    assert st.static_mean[1] == pytest.approx((truth["lsm"].values * w).sum(), rel=1e-6)
    clim = st.climatology_dataset(truth["time"].values[:2], truth["lat"].values, truth["lon"].values)
    assert clim["t850"].dims == ("time", "lat", "lon") and clim["t850"].shape == (2, 9, 16)
    assert main(["data", "stats", str(tmp_path / "missing.zarr")]) == 2


def test_memory_budget_splits_channels_and_time_without_changing_the_numbers(tmp_path, capsys):
    """A budget too small for one pass gives channel groups and one-step blocks, and the same statistics."""
    from sciml.cli import main
    from sciml.forecasting.data.stats import PER_CHANNEL_FIELDS, stats_blocking

    times = pd.date_range("2001-01-01", periods=48, freq="6h")
    g = Grid("equiangular", 9, 16)
    rng = np.random.default_rng(0)
    chans = ["z500", "t850", "u500", "v500"]
    ds = xr.Dataset(
        {
            c: (("time", "lat", "lon"), rng.standard_normal((48, 9, 16)).astype(np.float32) + k)
            for k, c in enumerate(chans)
        },
        coords={"time": times, "lat": g.lat, "lon": g.lon},
    )
    whole = compute_stats(source_from_dataset(ds), StatsConfig())
    field = 8.0 * 9 * 16
    small = StatsConfig(memory_bytes=field * (3 + PER_CHANNEL_FIELDS))  # one channel per pass (3 terms), one step
    assert stats_blocking(4, 9 * 16, 3, small) == (1, 1)
    assert stats_blocking(4, 9 * 16, 3, StatsConfig()) == (4, 64)  # small data: one pass, the usual block
    split = compute_stats(source_from_dataset(ds), small)
    for name in ("mean", "std", "diff_mean", "diff_std", "min", "max"):
        np.testing.assert_allclose(getattr(split, name), getattr(whole, name), rtol=1e-10, atol=1e-12, err_msg=name)
    np.testing.assert_allclose(split.clim, whole.clim, rtol=1e-6, atol=1e-7)  # stored as float32: last-bit rounding
    assert split.channels == whole.channels and split.attrs["n_diff_pairs"] == whole.attrs["n_diff_pairs"]
    # the CLI takes the budget as a size; a wrong one is one line, exit 2
    store = tmp_path / "s.zarr"
    ds.to_zarr(store, zarr_format=3, consolidated=False)
    assert main(["data", "stats", str(store), "--memory", "lots"]) == 2
    assert "write e.g. 80GB" in capsys.readouterr().err
