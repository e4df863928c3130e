"""Training samples: tiles equal slices of the full read, normalisation, windows that respect segments and
missing steps, multi-worker loading, and clear errors for bad requests and NaN data."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from sciml.errors import UsageError
from sciml.forecasting.data import (
    PRESETS,
    ForecastDataConfig,
    ForecastDataset,
    NormStats,
    Tile,
    compute_stats,
    open_source,
    simulate,
    source_from_dataset,
    stats_path,
    write_store,
)
from sciml.forecasting.data.testing import synthetic_truth, write_wb2


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Tiny shallow-water store (2 trajectories x 3 days, 33x64) with statistics beside it."""
    cfg = dataclasses.replace(PRESETS["tiny"], days=3, spinup_days=0.5)
    ds, _ = simulate(cfg)
    path = tmp_path_factory.mktemp("swe") / "swe.zarr"
    src = source_from_dataset(ds)
    write_store(src, path)
    compute_stats(src).save(stats_path(path))
    return path


def _cfg(store, **kw) -> ForecastDataConfig:
    return ForecastDataConfig(store=store, **kw)


def test_tiles_reassemble_the_full_sample(store):
    full = ForecastDataset(_cfg(store, steps=2))
    assert full.grid.nlat == 33 and full.channels == ["z500", "u500", "v500", "vo500"]
    h, w = 2, 3  # uneven splits: 17/16 rows, 22/21/21 columns
    i = len(full) - 1
    ref = full[i]
    for rh in range(h):
        for rw in range(w):
            tile = Tile.from_split(33, 64, h, w, rh, rw)
            part = ForecastDataset(_cfg(store, steps=2), tile=tile)
            got = part[i]
            ls, xs = tile.slices
            for key in ("input", "static"):
                assert torch.equal(got[key], ref[key][..., ls, xs]), key
            for key in ("target", "features"):
                assert torch.equal(got[key], ref[key][..., ls, xs]), key
            assert torch.equal(got["time"], ref["time"])
    assert Tile.from_slices(slice(17, None), slice(0, 22), 33, 64) == Tile.from_split(33, 64, h, w, 1, 0)
    assert Tile.from_split(33, 64, h, w, 0, 0).shape == (17, 22) and Tile.from_split(33, 64, h, w, 1, 2).shape == (
        16,
        21,
    )


def test_samples_are_normalised_windows_inside_one_segment(store):
    ds = ForecastDataset(_cfg(store, steps=3))
    raw = ForecastDataset(_cfg(store, steps=3, normalize=False))
    st = NormStats.load(stats_path(store))
    with open_source(store) as src:
        seg = np.concatenate([p["segment"].values for p in src.parts])
        times = src.times
    per_segment = 3 * 4  # 3 days of 6-hourly samples
    assert len(ds) == 2 * (per_segment - 3)
    pos = {t: k for k, t in enumerate(times.as_unit("ns").asi8)}
    for i in range(len(ds)):
        t = ds[i]["time"].numpy()
        assert (np.diff(t) == 6 * 3600 * 10**9).all()
        assert len({seg[pos[x]] for x in t}) == 1  # never crosses from one trajectory to the next
    s = ds[5]
    x = raw[5]
    mean = torch.as_tensor(st.mean, dtype=torch.float32)[:, None, None]
    std = torch.as_tensor(st.std, dtype=torch.float32)[:, None, None]
    torch.testing.assert_close(s["input"] * std + mean, x["input"], rtol=1e-5, atol=1e-5 * float(std.max()))
    assert s["target"].shape == (3, 4, 33, 64) and s["features"].shape == (4, 3, 33, 64)
    assert ds.feature_names == ["cos_zenith", "doy_cos", "doy_sin"]
    # over the whole dataset the normalised channels have ~zero mean and ~unit spread
    allx = torch.stack([ds[i]["input"] for i in range(len(ds))])
    assert allx.mean().abs() < 0.5 and 0.5 < allx.std() < 1.5


def test_step_hours_and_time_range(store):
    ds = ForecastDataset(_cfg(store, steps=1, step_hours=12, start="2001-01-01T12", end="2001-01-03T18"))
    t = pd.DatetimeIndex(ds.sample_times())
    assert t[0] == pd.Timestamp("2001-01-01T12") and t[-1] == pd.Timestamp("2001-01-03T06")
    assert (np.diff(ds[0]["time"].numpy()) == 12 * 3600 * 10**9).all()


def test_multiworker_loader_matches_single_process(store):
    ds = ForecastDataset(_cfg(store, steps=1))
    one = list(torch.utils.data.DataLoader(ds, batch_size=4, num_workers=0))
    two = list(torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2))
    assert len(one) == len(two)
    for a, b in zip(one, two, strict=True):
        for k in a:
            assert torch.equal(a[k], b[k]), k


def test_bad_requests(store, tmp_path):
    with pytest.raises(UsageError, match=r"\['q700'\] not in the store; available: \['z500'"):
        ForecastDataset(_cfg(store, channels=("z500", "q700")))
    with pytest.raises(UsageError, match="outside the 33x64 grid"):
        ForecastDataset(_cfg(store), tile=Tile((0, 40), (0, 64)))
    with pytest.raises(UsageError, match="no window of 40 step"):
        ForecastDataset(_cfg(store, steps=40))
    with pytest.raises(UsageError, match="no statistics file"):
        ForecastDataset(_cfg(store, stats=tmp_path / "none.nc"))
    with pytest.raises(UsageError, match="not a canonical store"):
        ForecastDataset(_cfg(write_wb2(synthetic_truth(), tmp_path / "wb2.zarr")))
    with pytest.raises(ValueError, match="steps must be >= 1"):
        _cfg(store, steps=0)


def test_nan_in_data_is_reported_with_channel_and_time(tmp_path):
    truth = synthetic_truth(steps=6)
    truth["t850"].values[2, 4, 4] = np.nan
    with open_source(write_wb2(truth, tmp_path / "nan_wb2.zarr")) as src:
        write_store(src, tmp_path / "nan.zarr")
    ds = ForecastDataset(_cfg(tmp_path / "nan.zarr", normalize=False, features=()))
    assert ds[0]["input"].shape == (6, 9, 16) and ds[0]["static"].shape == (2, 9, 16)
    with pytest.raises(UsageError, match=r"NaN/inf in channel\(s\) t850 \(1 values\) at \['2001-12-31 12:00:00'\]"):
        ds[1]
