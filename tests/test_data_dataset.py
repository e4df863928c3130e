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
    DataConfig,
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
from sciml.forecasting.data.loader import StepBatches, batch_loader, to_device
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


def _cfg(store, **kw) -> DataConfig:
    return DataConfig(store=store, **kw)


def test_tiles_reassemble_the_full_sample(store):
    full = ForecastDataset(_cfg(store), 2)
    assert full.grid.nlat == 33 and full.channels == ["z500", "u500", "v500", "vo500"]
    h, w = 2, 3  # uneven splits: 17/16 rows, 22/21/21 columns
    i = len(full) - 1
    ref = full[i]
    for rh in range(h):
        for rw in range(w):
            tile = Tile.from_split(33, 64, h, w, rh, rw)
            part = ForecastDataset(_cfg(store), 2, tile=tile)
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
    ds = ForecastDataset(_cfg(store), 3)
    raw = ForecastDataset(_cfg(store), 3, normalize=False)
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
    ds = ForecastDataset(_cfg(store, step_hours=12), 1, start="2001-01-01T12", end="2001-01-03T18")
    t = pd.DatetimeIndex(ds.sample_times())
    assert t[0] == pd.Timestamp("2001-01-01T12") and t[-1] == pd.Timestamp("2001-01-03T06")
    assert (np.diff(ds[0]["time"].numpy()) == 12 * 3600 * 10**9).all()


def test_multiworker_loader_matches_single_process(store):
    ds = ForecastDataset(_cfg(store), 1)
    one = list(torch.utils.data.DataLoader(ds, batch_size=4, num_workers=0))
    two = list(torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2))
    assert len(one) == len(two)
    for a, b in zip(one, two, strict=True):
        for k in a:
            assert torch.equal(a[k], b[k]), k


def _order(n: int, batch: int):
    """A pure step -> indices function like the trainer's (a seeded permutation per epoch)."""

    def indices(step: int) -> list[int]:
        out = []
        for p in range(step * batch, (step + 1) * batch):
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(p // n))
            out.append(int(perm[p % n]))
        return out

    return indices


def _collate(samples):
    return {k: torch.stack([s[k] for s in samples]) for k in samples[0]}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("batch", [1, 3])
def test_batch_loader_with_workers_gives_the_batches_of_a_plain_loop_in_step_order(store, batch):
    """Reference: the trainer's ``collate([ds[i] for i in indices(step)])`` in a loop; the loader with 0 and 2
    workers (prefetch 1 and 3) yields exactly those batches for steps 3..8, and leaves torch's global generator
    alone. Batch 1 is a view of the sample (in a worker: its shared memory), batch 3 a stack."""
    from sciml.forecasting.train.data import collate

    ds = ForecastDataset(_cfg(store), 2)
    indices = _order(len(ds), batch)
    ref = [collate([ds[i] for i in indices(s)]) for s in range(3, 9)]
    for workers, prefetch in ((0, 2), (2, 1), (2, 3)):
        state = torch.get_rng_state()
        got = list(batch_loader(ds, indices, collate, 3, 9, workers=workers, prefetch=prefetch))
        assert torch.equal(torch.get_rng_state(), state)
        assert len(got) == len(ref) and all(_same(g, r) for g, r in zip(got, ref, strict=True)), workers
        assert got[0]["input"].shape[0] == batch


def test_step_batches_restart_at_the_step_asked_for(store):
    """Continuing, jumping ahead (a resume) and going back all return the batch of the step asked for."""
    ds = ForecastDataset(_cfg(store), 1)
    indices = _order(len(ds), 2)
    batches = StepBatches(ds, indices, _collate, 10, workers=2, prefetch=2)
    try:
        for step in (0, 1, 2, 7, 8, 3, 9):
            assert _same(batches.get(step), _collate([ds[i] for i in indices(step)])), step
        with pytest.raises(IndexError, match="outside 0..9"):
            batches.get(10)
    finally:
        batches.close()
    moved = to_device(batches.get(4), "cpu")
    assert _same(moved, _collate([ds[i] for i in indices(4)]))
    batches.close()


def test_bad_requests(store, tmp_path):
    with pytest.raises(UsageError, match=r"\['q700'\] not in the store; available: \['z500'"):
        ForecastDataset(_cfg(store, channels=("z500", "q700")))
    with pytest.raises(UsageError, match="outside the 33x64 grid"):
        ForecastDataset(_cfg(store), tile=Tile((0, 40), (0, 64)))
    with pytest.raises(UsageError, match="no window of 40 step"):
        ForecastDataset(_cfg(store), 40)
    with pytest.raises(UsageError, match="no statistics file"):
        ForecastDataset(_cfg(store, stats=tmp_path / "none.nc"))
    with pytest.raises(UsageError, match="not a canonical store"):
        ForecastDataset(_cfg(write_wb2(synthetic_truth(), tmp_path / "wb2.zarr")))
    with pytest.raises(ValueError, match="steps must be >= 1"):
        ForecastDataset(_cfg(store), 0)


def test_samples_equal_an_independent_xarray_read_normalised_with_numpy(store):
    """Reference: xarray's own zarr reader and the float32 formula (x - mean) / std in numpy, on the full grid and on
    a tile, for every sample of a 2-step window: bit-for-bit equal (same IEEE float32 operations)."""
    import xarray as xr

    st = NormStats.load(stats_path(store))
    raw = xr.open_zarr(store, consolidated=False)
    times = raw["time"].values
    for tile in (None, Tile.from_split(33, 64, 2, 3, 1, 2)):
        ds = ForecastDataset(_cfg(store), 2, tile=tile, threads=3)
        ls, xs = ds.tile.slices
        mean = st.mean[st.index(ds.channels)].astype(np.float32)
        std = st.std[st.index(ds.channels)].astype(np.float32)
        for i in range(len(ds)):
            s = ds[i]
            t = np.searchsorted(times, s["time"].numpy().astype("datetime64[ns]"))
            ref = np.stack([raw[c].values[t][:, ls, xs] for c in ds.channels], axis=1)  # [3, C, h, w]
            ref = (ref - mean[:, None, None]) / std[:, None, None]
            assert ref.dtype == np.float32
            assert torch.equal(s["input"], torch.from_numpy(ref[0])), i
            assert torch.equal(s["target"], torch.from_numpy(ref[1:])), i


def test_nan_in_a_sample_is_refused_naming_channel_and_time(tmp_path):
    """The statistics refuse NaN data; a sample holding one (stats computed before it appeared) is refused with
    the channel, the count and the time, and the samples around it read normally."""
    truth = synthetic_truth(steps=6)
    with open_source(write_wb2(truth, tmp_path / "wb2.zarr")) as src:
        write_store(src, tmp_path / "clean.zarr")
        stats = compute_stats(src)
    truth["t850"].values[2, 4, 4] = np.nan
    with open_source(write_wb2(truth, tmp_path / "nan_wb2.zarr")) as src:
        write_store(src, tmp_path / "nan.zarr")
        with pytest.raises(UsageError, match=r"NaN/inf values in \['t850'\]"):
            compute_stats(src)
    stats.save(stats_path(tmp_path / "nan.zarr"))
    ds = ForecastDataset(_cfg(tmp_path / "nan.zarr", features=()))
    assert torch.isfinite(ds[0]["input"]).all() and torch.isfinite(ds[3]["input"]).all()
    when = str(pd.Timestamp(truth.time.values[2]))
    with pytest.raises(UsageError, match=rf"NaN/inf in channel\(s\) t850 \(1 values\) at \['{when}'\]"):
        ds[2]
    # through loader workers the same one line arrives (not the worker's wrapped traceback)
    from sciml.forecasting.train.data import collate

    batches = StepBatches(ds, lambda step: [step], collate, 4, workers=2, prefetch=1)
    with pytest.raises(UsageError) as info:
        batches.get(2)
    assert str(info.value).startswith(f"{tmp_path / 'nan.zarr'}: NaN/inf in channel(s) t850 (1 values) at ['{when}']")
    assert "Traceback" not in str(info.value) and "\n" not in str(info.value)
    batches.close()


def _read_threads(samples):
    """collate that reports the read-pool size of the process it runs in (a loader worker)."""
    return torch.tensor([torch.utils.data.get_worker_info().dataset.threads])


def test_loader_workers_share_the_cpus_for_reading(store, monkeypatch):
    """Each of W loader workers reads with at most CPUs // W threads (never fewer than 1), not CPUs each."""
    from sciml.forecasting.data import dataset as dataset_module

    ds = ForecastDataset(_cfg(store), 1, threads=8)
    for cpus, expected in ((6, 3), (3, 1), (1, 1)):
        monkeypatch.setattr(dataset_module, "_usable_cpus", lambda n=cpus: n)  # inherited by the forked workers
        got = {int(b) for b in batch_loader(ds, lambda step: [step], _read_threads, 0, 4, workers=2)}
        assert got == {expected}, cpus
    assert ds.threads == 8  # the training process's own dataset is untouched


def _independent_windows(store, steps: int, history: int, start=None, end=None) -> list[list[int]]:
    """Window time indices from the store's time axis and segments alone: every run of history + steps
    consecutive 6-hourly times in one segment inside [start, end], listed by initial time."""
    import xarray as xr

    raw = xr.open_zarr(store, consolidated=False)
    times, seg = pd.DatetimeIndex(raw["time"].values), raw["segment"].values
    lo, hi = pd.Timestamp(start or times[0]), pd.Timestamp(end or times[-1])
    n = history + steps
    out = []
    for i in range(len(times) - n + 1):
        run = list(range(i, i + n))
        same = (seg[run] == seg[i]).all()
        regular = (np.diff(times[run].asi8) == 6 * 3600 * 10**9).all()
        if same and regular and times[i] >= lo and times[i + n - 1] <= hi:
            out.append(run)
    return out


@pytest.mark.parametrize("start", [None, "2001-01-01T12"])
def test_history_windows_hold_the_previous_state_and_history_1_is_unchanged(store, start):
    """``history=2``: ``previous`` is the store's state 6 h before the input (xarray read, float32 (x - mean)/std,
    bit for bit), a window never reaches before ``start`` or across a segment, one window per segment less;
    ``history=1`` gives the windows of the independent enumeration and no ``previous``."""
    import xarray as xr

    one = ForecastDataset(_cfg(store), 2, start=start)
    two = ForecastDataset(_cfg(store), 2, start=start, history=2)
    ref1, ref2 = _independent_windows(store, 2, 1, start), _independent_windows(store, 2, 2, start)
    assert [w[0] for w in ref1] == list(one._meta.starts) and one._meta.window.tolist() == ref1
    assert [w[1] for w in ref2] == list(two._meta.starts) and two._meta.window.tolist() == ref2
    assert len(two) == len(one) - 2  # one window less in each of the two trajectories (after start, too)
    assert "previous" not in one[0]
    raw = xr.open_zarr(store, consolidated=False)
    times = raw["time"].values
    st = NormStats.load(stats_path(store))
    mean = st.mean[st.index(two.channels)].astype(np.float32)[:, None, None]
    std = st.std[st.index(two.channels)].astype(np.float32)[:, None, None]
    for i in (0, len(two) // 2, len(two) - 1):
        s = two[i]
        t0 = s["time"].numpy()[0].astype("datetime64[ns]")
        j = int(np.searchsorted(times, t0 - np.timedelta64(6, "h")))
        assert times[j] == t0 - np.timedelta64(6, "h")
        ref = (np.stack([raw[c].values[j] for c in two.channels]) - mean) / std
        assert s["previous"].shape == (1, 4, 33, 64)
        assert torch.equal(s["previous"][0], torch.from_numpy(ref)), i
        # input, targets, features and times are those of the one-step sample at the same initial time
        k = list(one._meta.starts).index(two._meta.starts[i])
        for key in ("input", "target", "features", "time"):
            assert torch.equal(s[key], one[k][key]), key
    from sciml.forecasting.train.data import collate

    batch = collate([two[0], two[1]])
    assert torch.equal(batch["previous"][1], two[1]["previous"])
    assert "previous" not in collate([one[0], one[1]])
