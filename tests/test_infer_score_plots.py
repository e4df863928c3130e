"""Ensemble inference (WB2 layout, streamed), scoring against independent references, plots, bad input.

One tiny model is trained for a few steps on a tiny shallow-water store per module (~15 s).
"""

from __future__ import annotations

import dataclasses
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

from sciml.errors import UsageError
from sciml.forecasting.eval.score import FC_DIMS, ScoreConfig, score_forecast
from sciml.forecasting.infer import InferConfig, ZarrForecastWriter, run_inference

INITS = ("2001-01-10T00", "2001-01-11T06", "2001-01-12T12")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from sciml.forecasting.data import PRESETS, compute_stats, simulate, source_from_dataset, stats_path, write_store
    from sciml.forecasting.train import Trainer, load_train_config

    root = tmp_path_factory.mktemp("fc")
    store = root / "tiny.zarr"
    ds, _ = simulate(PRESETS["tiny"])
    src = source_from_dataset(ds, path=store)
    write_store(src, store)
    compute_stats(src).save(stats_path(store))
    cfg = load_train_config(
        "tiny", {"data.store": str(store), "stages.0.steps": 3, "stages.1.steps": 1, "validation.every": 100}
    )
    Trainer(cfg, root / "run").run()
    ckpt = root / "run" / "checkpoint.pt"
    fc = root / "fc.zarr"
    run_inference(InferConfig(checkpoint=ckpt, inits=INITS, lead="1d", members=4, out=fc, seed=3))
    return {"root": root, "store": store, "ckpt": ckpt, "fc": fc}


def test_forecast_layout_is_weatherbench2(setup):
    fc = xr.open_zarr(setup["fc"], consolidated=False)
    truth = xr.open_zarr(setup["store"], consolidated=False)
    assert sorted(fc.data_vars) == ["u500", "v500", "z500"]
    for v in fc.data_vars.values():
        assert v.dims == FC_DIMS and v.dtype == np.float32
        assert v.attrs["units"] in ("m s-1", "m2 s-2") and v.attrs["long_name"]
    assert list(pd.DatetimeIndex(fc["time"].values)) == [pd.Timestamp(t + ":00") for t in INITS]
    assert list(pd.TimedeltaIndex(fc["prediction_timedelta"].values)) == [
        pd.Timedelta(hours=6 * k) for k in (1, 2, 3, 4)
    ]
    assert fc["realization"].values.tolist() == [0, 1, 2, 3]
    np.testing.assert_array_equal(fc["lat"].values, truth["lat"].values)  # 90 -> -90 as the truth store
    np.testing.assert_array_equal(fc["lon"].values, truth["lon"].values)
    assert fc["z500"].encoding["chunks"] == (1, 1, 4, 33, 64)
    assert fc.attrs["members"] == 4 and fc.attrs["step_hours"] == 6


def test_first_step_matches_a_hand_rollout(setup):
    """Normalisation, aux features, noise stream and denormalisation, against the model called by hand."""
    from sciml.forecasting.data import NormStats, resolve_features, stats_path
    from sciml.forecasting.infer import LoadedModel
    from sciml.forecasting.noise import EnsembleNoise

    lm = LoadedModel(setup["ckpt"])
    chans = list(lm.facts.channels)
    truth = xr.open_zarr(setup["store"], consolidated=False)
    t0 = pd.Timestamp(INITS[1] + ":00")
    x = np.stack([truth[c].sel(time=t0).values for c in chans]).astype(np.float64)
    st = NormStats.load(stats_path(setup["store"]))
    idx = st.index(chans)
    mean, std = st.mean[idx][:, None, None], st.std[idx][:, None, None]
    xn = torch.as_tensor((x - mean) / std, dtype=torch.float32)[None]
    feats = [
        torch.as_tensor(f(pd.DatetimeIndex([t0]).values, truth["lat"].values, truth["lon"].values))
        for f in resolve_features(lm.facts.features)
    ]
    aux = torch.cat(feats, dim=1)
    # the same member streams as inference: seed 3, 4 members, 3 initial times in one batch
    noise = EnsembleNoise(lm.noise(), 4, 3)
    z = noise.to_grid(noise.initial(len(INITS)))[:, 1:2]
    with torch.no_grad():
        out = torch.stack([lm.model(xn, aux, z[e]) for e in range(4)])[:, 0].double().numpy()
    expect = out * std + mean  # [M, C, H, W]
    fc = xr.open_zarr(setup["fc"], consolidated=False).sel(time=t0).isel(prediction_timedelta=0)
    got = np.stack([fc[c].values for c in chans], axis=1)  # [M, C, H, W]
    np.testing.assert_allclose(got, expect, rtol=1e-4, atol=1e-4 * np.abs(expect).max())


@pytest.fixture(scope="module")
def two_step(setup):
    """A tiny model with ``input_steps: 2`` trained for a few steps on the module's store."""
    from sciml.forecasting.train import Trainer, load_train_config

    over = {"stages.0.steps": 3, "stages.1.steps": 1, "validation.every": 100, "model.overrides.input_steps": 2}
    cfg = load_train_config("tiny", {"data.store": str(setup["store"]), **over})
    Trainer(cfg, setup["root"] / "run2").run()
    return setup["root"] / "run2" / "checkpoint.pt"


def test_two_step_forecast_equals_a_hand_rollout_with_the_previous_state(setup, two_step, tmp_path):
    """Every lead of a two-step model's forecast against ensemble_step called by hand, from states read with xarray
    (the initial time and 6 h before it), each member's previous state carried; the previous state matters."""
    from sciml.forecasting.data import NormStats, resolve_features, stats_path
    from sciml.forecasting.infer import LoadedModel
    from sciml.forecasting.models import ensemble_step
    from sciml.forecasting.noise import EnsembleNoise

    inits, members, steps = INITS[:2], 3, 3
    fc_path = tmp_path / "fc2.zarr"
    run_inference(InferConfig(checkpoint=two_step, inits=inits, lead="18h", members=members, out=fc_path, seed=5))
    lm = LoadedModel(two_step)
    assert lm.model_config.input_steps == 2 and lm.model.tendency_scale.min() > 1.5
    chans = list(lm.facts.channels)
    truth = xr.open_zarr(setup["store"], consolidated=False)
    st = NormStats.load(stats_path(setup["store"]))
    mean, std = st.mean[st.index(chans)][:, None, None], st.std[st.index(chans)][:, None, None]
    t0 = pd.DatetimeIndex([pd.Timestamp(t + ":00") for t in inits])

    def state_at(times: pd.DatetimeIndex) -> torch.Tensor:  # [M, B, C, H, W], normalised
        x = np.stack([np.stack([truth[c].sel(time=t).values for c in chans]) for t in times]).astype(np.float64)
        return torch.as_tensor((x - mean) / std, dtype=torch.float32).expand(members, -1, -1, -1, -1)

    state, prev = state_at(t0), state_at(t0 - pd.Timedelta(hours=6))
    noise = EnsembleNoise(lm.noise(), members, 5)
    z = noise.initial(len(inits))
    lat, lon = truth["lat"].values, truth["lon"].values
    expect = []
    with torch.no_grad():
        for k in range(steps):
            aux = torch.cat(
                [torch.as_tensor(f((t0 + k * lm.step).values, lat, lon)) for f in resolve_features(lm.facts.features)],
                dim=1,
            )
            if k:
                z = noise.step(z)
            if k == 0:  # the previous state is an input: persistence instead of it changes the forecast
                other = ensemble_step(lm.model, state, aux, noise.to_grid(z), state)
            state, prev = ensemble_step(lm.model, state, aux, noise.to_grid(z), prev), state
            expect.append(state.double().numpy() * std + mean)
            if k == 0:
                assert (other - state).abs().max() > 1e-3
    fc = xr.open_zarr(fc_path, consolidated=False)
    got = np.stack([fc[c].values for c in chans], axis=3)  # [B, K, M, C, H, W]
    want = np.stack(expect).transpose(2, 0, 1, 3, 4, 5)  # [K, M, B, ...] -> [B, K, M, ...]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_two_step_init_without_the_previous_state_is_refused(setup, two_step, tmp_path, capsys):
    """An init at the store's first time, or at the first time of a trajectory (the step before is another
    trajectory's), is refused with one line naming it and the fix, exit 2; one-step models accept both."""
    from sciml.cli import main

    truth = xr.open_zarr(setup["store"], consolidated=False)
    first = pd.Timestamp(truth["time"].values[0])
    seg = truth["segment"].values
    second = pd.Timestamp(truth["time"].values[int(np.argmax(seg != seg[0]))])
    capsys.readouterr()
    base = ["forecast", "infer", "--checkpoint", str(two_step), "--lead", "6h", "--members", "2"]
    for t, why in ((first, "is not in"), (second, "another trajectory segment")):
        argv = [*base, "--init", t.isoformat(), "--out", str(tmp_path / "x.zarr")]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"init time {t}" in err[0] and why in err[0] and "input_steps 2" in err[0], err
    one = ["forecast", "infer", "--checkpoint", str(setup["ckpt"]), "--lead", "6h", "--members", "2"]
    assert main([*one, "--init", first.isoformat(), "--init", second.isoformat(), "--out", str(tmp_path / "y")]) == 0


def test_inference_streams_one_lead_at_a_time(setup, tmp_path):
    seen = []

    class Recording(ZarrForecastWriter):
        def append(self, lead, fields):
            seen.append((lead, fields.shape))
            super().append(lead, fields)

    run_inference(
        InferConfig(checkpoint=setup["ckpt"], inits=INITS[:1], lead="2d", members=2, out=tmp_path / "f.zarr"),
        writer_cls=Recording,
    )
    assert [s[0] for s in seen] == [pd.Timedelta(hours=6 * k) for k in range(1, 9)]
    assert {s[1] for s in seen} == {(1, 2, 3, 33, 64)}  # one lead per write, whatever the forecast length
    assert xr.open_zarr(tmp_path / "f.zarr", consolidated=False).sizes["prediction_timedelta"] == 8
    with (
        warnings.catch_warnings()
    ):  # consolidated at the end: a plain open_zarr, as for WB2, neither warns nor falls back
        warnings.simplefilter("error")
        assert xr.open_zarr(tmp_path / "f.zarr", consolidated=True).sizes["prediction_timedelta"] == 8


def _store_bytes(path: Path) -> dict[str, bytes]:
    return {str(f.relative_to(path)): f.read_bytes() for f in sorted(path.rglob("*")) if f.is_file()}


def test_overlapped_writer_writes_the_sequential_store_bit_for_bit(setup, tmp_path):
    """Inference with the writer thread writes the same store, file by file and byte by byte, as writing in turn."""
    base = dict(checkpoint=setup["ckpt"], inits=INITS[:2], lead="1d", members=2, seed=5)
    stores = {}
    for overlap in (False, True):
        out = tmp_path / f"overlap{int(overlap)}.zarr"
        res = run_inference(InferConfig(**base, out=out, overlap_writes=overlap))
        assert res["device"] == "cpu" and res["steps"] == 4
        stores[overlap] = _store_bytes(out)
    assert len(stores[True]) > 10 and stores[True].keys() == stores[False].keys()
    assert all(stores[True][k] == stores[False][k] for k in stores[False])


def test_forecast_in_smaller_network_calls_matches_one_call(setup, tmp_path, capsys):
    """``--max-batch`` changes only how many samples go through the network at once: the 2 x 3 samples in calls of
    1, 4 (4 + 2) and all 6 give the same forecast at every lead to float rounding; a bad value is one line."""
    from sciml.cli import main

    base = dict(checkpoint=setup["ckpt"], inits=INITS, lead="1d", members=2, seed=4)
    fc = {}
    for mb in (1, 4, 6):
        run_inference(InferConfig(**base, out=tmp_path / f"mb{mb}.zarr", max_batch=mb))
        fc[mb] = xr.open_zarr(tmp_path / f"mb{mb}.zarr", consolidated=False).load()
    for mb in (1, 4):
        for c in ("z500", "u500", "v500"):
            scale = float(np.abs(fc[6][c]).max())
            np.testing.assert_allclose(fc[mb][c].values, fc[6][c].values, rtol=0, atol=1e-5 * scale, err_msg=c)
    assert float(np.abs(fc[6]["z500"].isel(realization=0) - fc[6]["z500"].isel(realization=1)).max()) > 1.0
    argv = ["forecast", "infer", "--checkpoint", str(setup["ckpt"]), "--init", INITS[0], "--lead", "6h"]
    capsys.readouterr()
    assert main([*argv, "--out", str(tmp_path / "x.zarr"), "--max-batch", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--max-batch must be >= 1, got 0" in err[0]
    assert not (tmp_path / "x.zarr").exists()


@pytest.mark.parametrize("fail_at", [1, 3], ids=["second-lead", "last-lead"])
def test_writer_errors_reach_the_caller_and_leave_no_store(setup, tmp_path, fail_at):
    """An error on the writer thread is raised by run_inference (at the next lead, or when waiting for the last);
    no store, temporary or thread is left behind."""
    import threading

    class FailingWriter(ZarrForecastWriter):
        def append(self, lead, fields):
            if self.n == fail_at:
                raise OSError(28, "No space left on device")
            super().append(lead, fields)

    out = tmp_path / "f.zarr"
    cfg = InferConfig(checkpoint=setup["ckpt"], inits=INITS[:1], lead="1d", members=2, out=out, overlap_writes=True)
    with pytest.raises(OSError, match="No space left"):
        run_inference(cfg, writer_cls=FailingWriter)
    assert not out.exists() and list(tmp_path.iterdir()) == []
    assert not [t for t in threading.enumerate() if t.name == "sciml-forecast-writer"]


def test_background_writer_bounds_what_is_in_flight():
    """One lead is written while the next is computed, never more: append waits for the previous write."""
    import threading
    import time

    from sciml.forecasting.infer import BackgroundWriter

    started, release, log = threading.Event(), threading.Event(), []

    class Slow:
        def append(self, lead, fields):
            started.set()
            release.wait(5)
            log.append(lead)

    bg = BackgroundWriter(Slow())
    bg.append(1, None)
    assert started.wait(5)
    second = threading.Thread(target=bg.append, args=(2, None))
    second.start()
    time.sleep(0.2)
    assert second.is_alive() and log == []  # lead 2 waits for lead 1 to be written
    release.set()
    second.join(5)
    bg.finish()
    assert log == [1, 2] and not bg._thread.is_alive()


def test_checkpoint_saved_on_another_device_runs_here(setup, tmp_path):
    """A checkpoint whose tensors are tagged as CUDA tensors (as saved from a GPU run) loads here onto the CPU and
    forecasts exactly what the same weights saved from the CPU forecast."""
    import torch.serialization as ser

    from sciml.forecasting.checkpoint import load_checkpoint, save_checkpoint

    payload = {k: v for k, v in load_checkpoint(setup["ckpt"]).items() if k not in ("format", "sha256")}
    gpu_ckpt = tmp_path / "gpu.pt"
    registry = list(ser._package_registry)
    ser.register_package(0, lambda storage: "cuda:0", lambda storage, location: None)  # tag every storage cuda:0
    try:
        save_checkpoint(gpu_ckpt, payload)
    finally:
        ser._package_registry[:] = registry
    if not torch.cuda.is_available():  # the file really asks for a GPU: a plain load fails on this machine
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(gpu_ckpt, weights_only=True)
    base = dict(inits=INITS[:1], lead="12h", members=2, seed=1, device="cpu")
    run_inference(InferConfig(checkpoint=gpu_ckpt, out=tmp_path / "gpu.zarr", **base))
    run_inference(InferConfig(checkpoint=setup["ckpt"], out=tmp_path / "cpu.zarr", **base))
    a, b = (xr.open_zarr(tmp_path / f"{n}.zarr", consolidated=False) for n in ("gpu", "cpu"))
    for c in ("z500", "u500", "v500"):
        np.testing.assert_array_equal(a[c].values, b[c].values)


def test_bf16_forecast_stays_within_bfloat16_rounding_of_fp32(setup, tmp_path):
    """bf16 autocast changes the first lead by bfloat16 rounding only: the anomaly from the initial state agrees
    with fp32 to a few units of bfloat16's 2**-8 relative precision (|diff| <= 0.05 x rms of the fp32 change)."""
    base = dict(checkpoint=setup["ckpt"], inits=INITS[:1], lead="6h", members=2, seed=2)
    res = run_inference(InferConfig(**base, out=tmp_path / "bf16.zarr", precision="bf16"))
    assert res["precision"] == "bf16"
    run_inference(InferConfig(**base, out=tmp_path / "fp32.zarr"))
    truth = xr.open_zarr(setup["store"], consolidated=False).sel(time=pd.Timestamp(INITS[0] + ":00"))
    lo, hi = (xr.open_zarr(tmp_path / f"{n}.zarr", consolidated=False).isel(time=0) for n in ("bf16", "fp32"))
    for c in ("z500", "u500", "v500"):
        change = hi[c].values - truth[c].values  # the model's 6 h update, [M, H, W]
        diff = lo[c].values - hi[c].values
        assert np.isfinite(diff).all() and 0 < np.abs(diff).max() <= 0.05 * np.sqrt(np.mean(change**2)), c


def test_device_flags_give_one_clear_line(setup, tmp_path, capsys):
    from sciml.cli import main

    argv = ["forecast", "infer", "--checkpoint", str(setup["ckpt"]), "--init", INITS[0], "--lead", "6h"]
    argv += ["--members", "2", "--out", str(tmp_path / "x.zarr")]
    cases = [(["--device", "tpu"], "device 'tpu' is not one of auto, cpu, cuda, cuda:N")]
    if not torch.cuda.is_available():
        cases.append((["--device", "cuda"], "CUDA is not available here"))
    capsys.readouterr()
    for extra, msg in cases:
        assert main([*argv, *extra]) == 2, extra
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and msg in err[0], (extra, err)
    assert not (tmp_path / "x.zarr").exists()


def test_bad_input_is_refused_before_the_network_is_loaded(tmp_path):
    """A missing checkpoint fails without importing torch-harmonics (seconds of start-up)."""
    import subprocess
    import sys

    code = (
        "import sys; from sciml.cli import main;"
        f"code = main(['forecast', 'infer', '--checkpoint', {str(tmp_path / 'no.pt')!r}, '--init', '2001-01-01T00',"
        f" '--lead', '1d', '--out', {str(tmp_path / 'f.zarr')!r}]);"
        "print(code, 'torch_harmonics' in sys.modules, 'sciml.forecasting.models.fcn3' in sys.modules)"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.stdout.split() == ["2", "False", "False"], run.stderr
    assert "does not exist" in run.stderr


def _wb2_weights(lat: np.ndarray) -> np.ndarray:
    """Independent WB2 cell-area weights: sin of the cell bounds (midpoints, +-90), normalised to mean 1."""
    asc = np.sort(lat)
    bounds = np.concatenate([[-90.0], (asc[1:] + asc[:-1]) / 2, [90.0]])
    w = np.diff(np.sin(np.deg2rad(bounds)))
    w = w / w.mean()
    return w if lat[0] < lat[-1] else w[::-1]


def test_scores_match_independent_references(setup, tmp_path):
    import scoringrules

    out = tmp_path / "scores.nc"
    s = score_forecast(ScoreConfig(forecast=setup["fc"], truth=setup["store"], out=out))
    back = xr.open_dataset(out, engine="h5netcdf")
    assert set(back["channel"].values) == {"u500", "v500", "z500"} and back.sizes["prediction_timedelta"] == 4
    fc = xr.open_zarr(setup["fc"], consolidated=False)
    truth = xr.open_zarr(setup["store"], consolidated=False)
    w = _wb2_weights(truth["lat"].values)[:, None]
    inits = pd.DatetimeIndex(fc["time"].values)
    for c in ("z500", "u500"):
        for j in (0, 3):
            lead = pd.Timedelta(fc["prediction_timedelta"].values[j])
            f = fc[c].isel(prediction_timedelta=j).values.astype(np.float64)  # [T, M, H, W]
            y = truth[c].sel(time=inits + lead).values.astype(np.float64)  # [T, H, W]
            y0 = truth[c].sel(time=inits).values.astype(np.float64)
            amean = lambda a: (a * w).mean(axis=(-2, -1))  # noqa: E731
            crps = amean(scoringrules.crps_ensemble(y, f, m_axis=1, estimator="fair")).mean()
            rmse = np.sqrt(amean((f.mean(1) - y) ** 2).mean())
            spread = np.sqrt(amean(f.var(1, ddof=1)).mean())
            mae_persist = amean(np.abs(y0 - y)).mean()
            got = s.sel(channel=c).isel(prediction_timedelta=j)
            np.testing.assert_allclose(float(got["crps"]), crps, rtol=1e-5)
            np.testing.assert_allclose(float(got["rmse"]), rmse, rtol=1e-5)
            np.testing.assert_allclose(float(got["ssr"]), spread / rmse, rtol=1e-5)
            np.testing.assert_allclose(float(got["crps_persistence"]), mae_persist, rtol=1e-5)
            hist = got["rank_histogram"].values
            assert hist.shape == (5,) and hist.sum() == f.shape[0] * f.shape[2] * f.shape[3]
            assert np.all(np.isfinite([float(got[k]) for k in ("crps_climatology", "acc", "acc_persistence")]))
            if c == "z500":  # a scalar field synthesised at T16: band-limited, so Parseval holds to round-off
                from sciml.forecasting.sphere import quadrature_weights

                q = quadrature_weights(33, 64, normalize=False).numpy()
                np.testing.assert_allclose(got["psd_truth"].values.sum(), (y**2 * q).sum((-2, -1)).mean(), rtol=1e-5)


def test_plots_render_nontrivial_pngs(setup, tmp_path):
    import matplotlib.image as mpimg

    from sciml.forecasting.eval.plots import plot_all

    scores = tmp_path / "scores.nc"
    score_forecast(ScoreConfig(forecast=setup["fc"], truth=setup["store"], out=scores))
    files = plot_all(scores, tmp_path / "plots", setup["fc"], setup["store"])
    assert sorted(f.name for f in files) == ["maps.png", "rank_histograms.png", "skill.png", "spectra.png"]
    for f in files:
        assert f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f.stat().st_size > 20_000
        img = mpimg.imread(f)
        assert img.shape[0] > 300 and img.shape[1] > 600 and img[..., :3].std() > 0.05


def _other_grid_store(path):
    from sciml.forecasting.data import source_from_dataset, write_store
    from sciml.forecasting.data.contract import finalize_canonical
    from sciml.forecasting.data.grid import Grid

    g = Grid("equiangular", 17, 32)
    rng = np.random.default_rng(0)
    ds = xr.Dataset(
        {c: (("time", "lat", "lon"), rng.standard_normal((4, 17, 32)).astype("f4")) for c in ("z500", "u500", "v500")},
        coords={"time": pd.date_range("2001-01-10", periods=4, freq="6h"), "lat": g.lat, "lon": g.lon},
    )
    write_store(source_from_dataset(finalize_canonical(ds), path=path), path)
    return path


def test_bad_input_gives_one_clear_line(setup, tmp_path, capsys):
    from sciml.cli import main

    other = _other_grid_store(tmp_path / "g.zarr")
    capsys.readouterr()  # only what the commands below print counts
    base = ["forecast", "infer", "--members", "2", "--out", str(tmp_path / "x.zarr")]
    ck = ["--checkpoint", str(setup["ckpt"])]
    cases = [
        ([*base, "--checkpoint", str(tmp_path / "nope.pt"), "--init", INITS[0], "--lead", "1d"], "does not exist"),
        (
            [*base, *ck, "--init", INITS[0], "--lead", "1d", "--data", str(other)],
            "17x32 grid but the checkpoint",
        ),
        ([*base, *ck, "--init", "2030-01-01T00", "--lead", "1d"], "not in"),
        ([*base, *ck, "--init", INITS[0], "--lead", "7h"], "not a multiple of the model step 6 h"),
        ([*base, *ck, "--init", INITS[0], "--lead", "soon"], "not a duration"),
        (
            ["forecast", "score", str(tmp_path / "none.zarr"), "--truth", str(setup["store"]), "--out", "s.nc"],
            "does not exist",
        ),
    ]
    for argv, msg in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and msg in err[0], (argv, err)
    with pytest.raises(UsageError, match="exists"):
        run_inference(InferConfig(checkpoint=setup["ckpt"], inits=INITS, lead="6h", members=2, out=setup["fc"]))


def test_cli_infer_score_plot_round_trip(setup, tmp_path, capsys, caplog):
    from sciml.cli import main

    fc, scores = tmp_path / "fc.zarr", tmp_path / "s.nc"
    argv = ["forecast", "infer", "--checkpoint", str(setup["ckpt"]), "--init", INITS[0], "--init", INITS[2]]
    assert main([*argv, "--lead", "12h", "--members", "2", "--antithetic", "--out", str(fc)]) == 0
    assert main(["forecast", "score", str(fc), "--truth", str(setup["store"]), "--out", str(scores)]) == 0
    out = capsys.readouterr().out
    assert "CRPS" in out and "persist" in out and "z500" in out
    assert "antithetic member pairs" in caplog.text  # scores of antithetic members overstate the spread
    assert main(["plot", "forecast", str(scores), "--out", str(tmp_path / "p")]) == 0
    assert (tmp_path / "p" / "skill.png").stat().st_size > 20_000


def test_acceptance_report_checks_each_target():
    from sciml.forecasting.eval.expectations import FULL, acceptance_checks, acceptance_report

    hours = np.array([6.0, 24.0, 120.0])
    l = np.arange(8)
    psd_truth = np.tile(1.0 / (1 + l) ** 3, (3, 1))
    s = xr.Dataset(
        {
            "crps": (("prediction_timedelta", "channel"), [[1.0], [2.0], [3.0]]),
            "crps_persistence": (("prediction_timedelta", "channel"), [[1.5], [2.5], [2.9]]),  # beaten but at 120 h
            "crps_climatology": (("prediction_timedelta", "channel"), [[4.0], [4.0], [4.0]]),
            "ssr": (("prediction_timedelta", "channel"), [[0.2], [0.8], [1.2]]),  # 6 h is outside the SSR window
            "ssr_corrected": (("prediction_timedelta", "channel"), [[0.2], [0.8], [1.4]]),
            "psd_truth": (("prediction_timedelta", "channel", "l"), psd_truth[:, None]),
            "psd_member": (
                ("prediction_timedelta", "channel", "l"),
                (psd_truth * np.r_[1, 1, 1, 1, 1.9, 3, 3, 3])[:, None],
            ),
        },
        coords={"channel": ["z500"], "lead_hours": ("prediction_timedelta", hours), "l": l},
    )
    *lines, verdict_line = acceptance_report(s).splitlines()
    assert verdict_line == "full demo: 2 of 5 expectations MISSED"
    verdict = {
        ln.split(":")[0].split(" max")[0].split(" range")[0].split(" at")[0].strip(): ln.split()[-1] for ln in lines
    }
    assert verdict == {
        "z500   CRPS / persistence": "FAIL",
        "z500   CRPS / climatology": "PASS",
        "z500   ssr": "PASS",
        "z500   ssr_corrected": "FAIL",
        "z500   P_member/P_truth": "PASS",  # l = 1..4 only: the factor 3 at l >= 5 is beyond lmax/2
    }
    checks = {c.target: c for c in acceptance_checks(s)}
    assert checks["CRPS / persistence"].high == pytest.approx(3.0 / 2.9) and not checks["CRPS / persistence"].passed
    assert (checks["ssr"].low, checks["ssr"].high) == (0.8, 1.2)  # leads 24-120 h only
    assert (checks["P_member/P_truth"].low, checks["P_member/P_truth"].high) == pytest.approx((1.0, 1.9))
    assert [c.line() for c in acceptance_checks(s)] == lines
    assert FULL.report(s.isel(prediction_timedelta=[0])) == ("no lead time of the scores lies in 24-120 h", False)


def _forecast_bench():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "bench" / "forecast_experiments.py"
    spec = importlib.util.spec_from_file_location("forecast_experiments", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench, path


def test_forecast_experiment_variants_are_valid_configs():
    """Every variant of bench/forecast_variants.yaml loads as a TrainConfig, and the bench's table reads checks."""
    from sciml.forecasting.train import load_train_config

    bench, path = _forecast_bench()
    variants = bench.load_variants(path.with_name("forecast_variants.yaml"))
    assert "demo" in variants and variants["demo"]["set"] == {}
    shipped = load_train_config("demo", {})
    for name, v in variants.items():
        cfg = load_train_config("demo", v["set"])
        if name == "demo":
            continue
        # the same training budget for every variant, except training-length levers, named for their factor; the
        # seed and model of the variants' base (demo-s5), whatever demo.yaml says
        # (-Kx: every stage K times; -pretrain-Kx: the two pretraining stages, 300 + 100 steps; -ft-half: the three
        # fine-tuning stages, 50 + 60 + 30 steps, halved)
        kx = re.fullmatch(r".*?(-pretrain)?-(\d+)x(-ft-half)?", name)
        factor = int(kx.group(2)) if kx else 1
        pretrain, finetune = 400 * factor, 140 * factor
        if kx and kx.group(1):
            finetune = 140
        if kx and kx.group(3):
            finetune //= 2
        assert cfg.total_steps == pretrain + finetune and cfg.seed == 1, name
        overrides = v["set"].get("model.overrides", {})
        assert cfg.model.overrides.get("input_steps", 1) == overrides.get("input_steps", 1), name
    # the shipped config is the two-state, degree-1 recipe with twice the pretraining, half the fine-tuning at half
    # the rates, and seed 2
    lr_half = variants["two-steps-degree-one-lr-half-pretrain-2x-ft-half"]["set"]
    assert shipped == load_train_config("demo", {**lr_half, "seed": 2})
    # and the longer `full` config is the four-times variant with seed 2
    four = load_train_config("demo", {**variants["two-steps-degree-one-4x"]["set"], "seed": 2})
    assert load_train_config("full") == dataclasses.replace(four, name="full")
    row = {
        "variant": "x",
        "checks": [
            {"channel": "z500", "target": t, "low": 0.5, "high": 0.9, "passed": True, "where": ""}
            for t in ("CRPS / persistence", "ssr", "P_member/P_truth")
        ],
    }
    text = bench.table([row, {"variant": "y", "error": "exit 1"}])
    assert "x" in text and "yes" in text and "exit 1" in text
    quick = bench.load_variants(path.with_name("quick_variants.yaml"))
    assert "quick" in quick and quick["quick"]["set"] == {}
    for name, v in quick.items():
        assert load_train_config("quick", v["set"]).stages[0].rollout == 1, name
    row["checks"][2] = {**row["checks"][2], "passed": False, "where": "at 120 h, l=1..16"}
    text = bench.checks_table([{**row, "train_steps": 120, "cpu_s": 201.4}])
    assert "P 1..16" in text and "0.50-0.90" in text and "120" in text and "201" in text and "NO" in text


def test_forecast_experiment_seed_sweeps_and_results_merge(tmp_path):
    """--seeds names runs NAME / NAME-seed-S with the seed added, counts the seeds that pass; results accumulate."""
    bench, _ = _forecast_bench()
    variants = {"a": {"about": "", "set": {"x": 1}}, "s": {"about": "", "set": {"seed": 3}}}
    swept, runs = bench.with_seeds(variants, ["a"], [0, 1, 2])
    assert runs == ["a", "a-seed-1", "a-seed-2"]
    assert swept["a-seed-2"]["set"] == {"x": 1, "seed": 2} and swept["a"] == variants["a"]
    assert bench.with_seeds(variants, ["a"], []) == (variants, ["a"])
    swept, runs = bench.with_seeds(variants, ["s"], [0, 1])  # a variant's own seed is its seed 0
    assert runs == ["s", "s-seed-1"] and swept["s"]["set"] == {"seed": 3} and swept["s-seed-1"]["set"] == {"seed": 1}
    rows = [{"variant": "a", "passed": True}, {"variant": "a-seed-1", "passed": False}, {"variant": "a-seed-2"}]
    assert bench.seed_summary(rows, ["a"], [0, 1, 2]) == ["a: 1 of 3 seeds meet every target (seeds 0)"]
    path = tmp_path / "results.json"
    assert bench.merge_rows(path, rows) == rows
    path.write_text(json.dumps({"rows": [{"variant": "old"}, {"variant": "a", "passed": False}]}))
    merged = bench.merge_rows(path, rows[:2])
    assert merged == [{"variant": "old"}, rows[0], rows[1]]
    # an old row without its own thread count keeps the file's, which the new run's replaces
    path.write_text(json.dumps({"rows": [{"variant": "old"}, {"variant": "b", "threads": 2}], "threads": 1}))
    assert bench.merge_rows(path, rows[:1]) == [
        {"variant": "old", "threads": 1},
        {"variant": "b", "threads": 2},
        rows[0],
    ]
    # a failed rerun keeps the scored row; a failed new variant is listed with its error
    failed = [{"variant": "b", "rc": -9, "error": "exit -9"}, {"variant": "c", "rc": 1, "error": "exit 1"}]
    assert bench.merge_rows(path, failed) == [
        {"variant": "old", "threads": 1},
        {"variant": "b", "threads": 2},
        failed[1],
    ]
    # scores only re-read: the row keeps what the run that made them cost, and at how many threads
    path.write_text(json.dumps({"rows": [{"variant": "b", "threads": 1, "wall_s": 900.0, "cpu_s": 850.0}]}))
    reread = {"variant": "b", "rc": 0, "reused": True, "threads": 2, "wall_s": 0.0, "passed": True}
    assert bench.merge_rows(path, [reread]) == [{**reread, "threads": 1, "wall_s": 900.0, "cpu_s": 850.0}]


def _wind_bench():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "bench" / "wind_spectra.py"
    spec = importlib.util.spec_from_file_location("wind_spectra", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_wind_spectra_bench_reads_known_ratios(setup, tmp_path, capsys):
    """Members that are the truth times k carry k^2 its power in every mode, case and lead; floored counts agree
    with the whitening weights the trainer builds."""
    import dataclasses

    from sciml.forecasting.train import load_train_config
    from sciml.forecasting.train.data import open_dataset
    from sciml.forecasting.train.objective import degree_weights, vector_pairs

    bench = _wind_bench()
    fc = xr.open_zarr(setup["fc"], consolidated=False)
    truth = xr.open_zarr(setup["store"], consolidated=False)
    T, D, R = fc.sizes["time"], fc.sizes["prediction_timedelta"], fc.sizes["realization"]
    valid = (fc.time.values[:, None] + fc.prediction_timedelta.values[None, :]).ravel()
    factors = {"z500": 3.0, "u500": 2.0, "v500": 2.0}
    fake = xr.Dataset(coords=fc.coords)
    for name, k in factors.items():
        t = truth[name].sel(time=valid).values.reshape(T, D, 1, *truth[name].shape[1:])
        fake[name] = (FC_DIMS, np.broadcast_to(k * t, (T, D, R, *t.shape[3:])).astype(np.float32))
    fake.to_zarr(tmp_path / "fake.zarr")
    out = tmp_path / "wind.json"
    args = [str(tmp_path / "fake.zarr"), "--truth", str(setup["store"])]
    bench.main([*args, "--json", str(out), "--growth", "z500:1-4,v500:2-3"])
    (res,) = json.loads(out.read_text())
    assert res["lead_h"] == 24 and res["degrees"] == list(range(1, 9))
    for key, ratios in res["wind"].items():
        np.testing.assert_allclose(ratios, 4.0, rtol=1e-4, err_msg=key)
    for name in ("z500", "v500"):
        s = res["scalar"][name]
        np.testing.assert_allclose(s["ratio"], factors[name] ** 2, rtol=1e-4)
        assert s["cases_above"] == s["cases"] == T and s["case_median"] == pytest.approx(factors[name] ** 2, rel=1e-4)
    assert [(g["channel"], g["degrees"]) for g in res["growth"]] == [("z500", [1, 4]), ("v500", [2, 3])]
    for g, k in zip(res["growth"], (9.0, 4.0), strict=True):
        np.testing.assert_allclose(g["ratio"], k, rtol=1e-4)
    np.testing.assert_allclose(np.divide(res["tilt"]["member_rms"], res["tilt"]["truth_rms"]), 2.0, rtol=1e-4)
    # a 100 m/s solid-body rotation about the axis at 30 E in every member (the members' own tilt is ~2 m/s):
    # one locked tilt, 100 sqrt(2 pi / 3) rms
    lat = np.deg2rad(fc.lat.values)[:, None]
    lon = np.deg2rad(fc.lon.values)[None, :] - np.deg2rad(30.0)
    tilted = fake.copy()
    tilted["u500"] = fake.u500 + (-100 * np.sin(lat) * np.cos(lon)).astype(np.float32)
    tilted["v500"] = fake.v500 + (100 * np.sin(lon) * np.ones_like(lat)).astype(np.float32)
    tilted.to_zarr(tmp_path / "tilted.zarr")
    bench.main([str(tmp_path / "tilted.zarr"), *args[1:], "--json", str(out)])
    tilt = json.loads(out.read_text())[0]["tilt"]
    assert min(tilt["phase_concentration"]) > 0.99
    np.testing.assert_allclose(tilt["member_rms"], 100 * np.sqrt(2 * np.pi / 3), rtol=0.03)
    assert "member mean above the truth in 3 of 3 cases" in capsys.readouterr().out
    # members = truth + a common superrotation (the ensemble-mean error: rotational) + a cross-equator flow of
    # alternating sign (the spread: divergent)
    assert R % 2 == 0
    sign = np.where(np.arange(R) % 2 == 0, 1.0, -1.0)[None, None, :, None, None].astype(np.float32)
    split = xr.Dataset(coords=fc.coords)
    t_u, t_v = (truth[c].sel(time=valid).values.reshape(T, D, 1, *truth[c].shape[1:]) for c in ("u500", "v500"))
    split["z500"] = fake.z500
    split["u500"] = (FC_DIMS, np.broadcast_to(t_u + 5.0 * np.cos(lat), (T, D, R, *t_u.shape[3:])).astype(np.float32))
    split["v500"] = (FC_DIMS, (t_v + 3.0 * np.cos(lat) * sign).astype(np.float32))
    split.to_zarr(tmp_path / "split.zarr")
    bench.main([str(tmp_path / "split.zarr"), *args[1:], "--json", str(out)])
    shares = json.loads(out.read_text())[0]["divergent_share"]
    np.testing.assert_allclose(shares["error"], 0.0, atol=1e-6)
    np.testing.assert_allclose(shares["spread"], 1.0, atol=1e-6)
    with pytest.raises(SystemExit, match="no channel 'w850'"):
        bench.main([*args, "--scalars", "w850"])

    cfg = load_train_config(
        "tiny",
        {"data.store": str(setup["store"]), "loss.spectral_degrees": "whitened-modes", "loss.spectral_weight": 0.1},
    )
    cfg = dataclasses.replace(cfg, loss=dataclasses.replace(cfg.loss, spectral_vectors=(("u500", "v500"),)))
    channels = tuple(cfg.data.channels or ("z500", "u500", "v500"))
    counts = bench.floored_counts(cfg, [0.01], range(1, 9))["0.01"]
    # independent path: a coefficient is floored iff the trainer's weight grows when the floor is lowered (the
    # normalising constant does not depend on the floor, so the weights of the others stay the same)
    pairs = vector_pairs(cfg, channels)
    ds = open_dataset(cfg, 1, "train")
    w = degree_weights(cfg, ds, pairs).double()
    low = dataclasses.replace(cfg, loss=dataclasses.replace(cfg.loss, spectral_floor=1e-12))
    ratio = w / degree_weights(low, ds, pairs).double()
    floored = ratio < 1 - 1e-5  # NaN (m > l) compares False
    names = list(counts)
    assert len(names) == 3 and sum(sum(c.values()) for c in counts.values()) > 0
    for c, name in enumerate(names):
        expect = {str(l): int(floored[c, l, 0]) + 2 * int(floored[c, l, 1 : l + 1].sum()) for l in range(1, 9)}
        assert counts[name] == expect, name


def test_infer_batch_bench_times_each_size_in_its_own_process(tmp_path):
    """``bench/infer_batch.py``: one row per size (plus the set-up-only baseline) with the number of network calls
    the size implies, a time and a peak; its table renders; a bad size is one line and exit 2."""
    import runpy
    import subprocess
    import sys

    bench = Path(__file__).resolve().parents[1] / "bench" / "infer_batch.py"
    out = tmp_path / "b.json"
    args = [sys.executable, str(bench), "--quick", "--samples", "4", "--sizes", "1,all", "--threads", "1"]
    res = subprocess.run([*args, "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    data = json.loads(out.read_text())
    rows = data["rows"]
    assert [(r["max_batch"], r["calls"]) for r in rows] == [(0, 0), (1, 4), (4, 1)]
    assert rows[0]["ms_per_sample"] is None and all(r["ms_per_sample"] > 0 for r in rows[1:])
    assert all(r["peak_memory_mb"] > 100 for r in rows) and data["settings"]["samples"] == 4
    tables = runpy.run_path(str(bench.parent / "tables.py"))
    assert "| 1 | 4 |" in "\n".join(tables["infer_batch"]("b.json", data))
    bad = subprocess.run([*args[:-4], "--sizes", "0", "--json", str(out)], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "must be >= 1" in bad.stderr
