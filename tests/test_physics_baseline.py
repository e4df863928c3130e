"""The perfect-model (physics) baseline of synth stores: state recovery, replay, calibration, scoring, intervals.

The references: the generator's own internal states and random stream (recorded by re-running its loop, checked
bitwise against ``simulate``), the generator's plain integrator without forcing, scoringrules' fair CRPS, and the
exact bootstrap distribution enumerated over every resample.
"""

from __future__ import annotations

import dataclasses
import itertools
import runpy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

from sciml.errors import UsageError
from sciml.forecasting.data.swe import (
    PRESETS,
    BatchedShallowWater,
    Integrator,
    OutputSynth,
    StateAnalysis,
    _group_seed,
    config_from_attrs,
    seasonal_factor,
    simulate,
    torch_threads,
)
from sciml.forecasting.eval.physics import CHANNELS, PhysicsEnsemble, ReplayIntegrator

ONE = dataclasses.replace(PRESETS["tiny"], days=3, trajectories=1, groups=1, spinup_days=1)
ZUV = list(CHANNELS[:3])


def _generator_run(cfg):
    """The generator's loop for its single group, recording per sample: the internal state, forcing, random
    stream state, Adams-Bashforth history and output fields."""
    step = pd.Timedelta(hours=cfg.step_hours)
    sub = int(round(cfg.step_hours * 3600 / cfg.dt))
    spin = int(round(cfg.spinup_days * 24 / cfg.step_hours))
    rec = []
    with torch_threads(1), torch.no_grad():
        gen = torch.Generator().manual_seed(_group_seed(cfg.seed, 0))
        model = BatchedShallowWater(cfg)
        synth = OutputSynth(cfg)
        integ = Integrator(model, model.balanced_initial_state(gen, cfg.trajectories), gen)
        t = pd.Timestamp(cfg.start) - spin * step
        for i in range(-spin, cfg.samples_per_trajectory):
            if i >= 0:
                rec.append(
                    dict(
                        s=integ.s.clone(),
                        forcing=integ.forcing.clone(),
                        gen=gen.get_state(),
                        hist=[h.clone() for h in integ.hist],
                        fields=synth(model, integ.s).astype(np.float32),
                    )
                )
            seasonal = torch.tensor([seasonal_factor(t + step / 2)] * cfg.trajectories, dtype=torch.float64)
            for _ in range(sub):
                integ.step(seasonal)
            t = t + step
    return model, rec


@pytest.fixture(scope="module")
def one():
    ds, _ = simulate(ONE)
    model, rec = _generator_run(ONE)
    stored = np.stack([ds[c].values for c in CHANNELS], axis=1)
    # the recording is the generator: the same bits as the store
    np.testing.assert_array_equal(np.concatenate([r["fields"] for r in rec]), stored)
    return ds, model, rec


def test_store_records_the_generator_settings(one):
    ds, _, _ = one
    assert config_from_attrs(ds.attrs) == ONE
    assert config_from_attrs({}) is None
    with pytest.raises(UsageError, match="swe_config"):
        config_from_attrs({"swe_config": "SWEConfig(nlat=__import__('os'))"})


def test_state_recovery_round_trip(one):
    ds, model, rec = one
    analysis, synth = StateAnalysis(ONE), OutputSynth(ONE)
    for i in (0, 5, 11):
        zuv = torch.from_numpy(np.stack([ds[c].values[i] for c in ZUV])[None].astype(np.float64))
        got, want = analysis(model, zuv), rec[i]["s"]
        # the store holds float32: each spectral field comes back to float32 rounding of its largest coefficient
        for k, tol in enumerate((1e-8, 3e-7, 3e-6)):  # Phi (mean gH dominates), vorticity, small divergence
            err = (got[:, k] - want[:, k]).abs().max() / want[:, k].abs().max()
            assert err < tol, (i, k, float(err))
        back = synth(model, got)[0]
        for c in range(4):
            f = rec[i]["fields"][0, c]
            np.testing.assert_allclose(back[c], f, rtol=0, atol=3e-6 * np.abs(f).max())


def _replay(ds, rec, i0, history):
    """Member 1 of a one-member physics ensemble driven by the truth's own forcing and random stream."""
    pe = PhysicsEnsemble(ds, pd.DatetimeIndex(ds["time"].values[[i0]]), 1, ZUV)
    gen = torch.Generator()
    gen.set_state(rec[i0]["gen"])
    f0 = torch.cat([torch.zeros_like(rec[i0]["forcing"]), rec[i0]["forcing"]])
    pe.integ = ReplayIntegrator(pe.model, pe.integ.s, [gen], 1, f0)
    if history:
        pe.integ.hist = [h.repeat_interleave(2, 0) for h in rec[i0]["hist"]]
    return pe


def test_replay_with_the_truths_forcing_tracks_the_truth(one):
    ds, _, rec = one
    i0 = 2
    exact, restarted = _replay(ds, rec, i0, history=True), _replay(ds, rec, i0, history=False)
    for k in (1, 4, 8):
        truth = rec[i0 + k]["fields"][0, :3]
        scale = truth.std(axis=(1, 2))[:, None, None]
        lead = pd.Timedelta(hours=6 * k)
        ens, _ = exact.advance(lead)
        # with the generator's history too: the same trajectory to the rounding of the stored initial state
        assert np.abs((ens[0, 0] - truth) / scale).max() < 1e-5
        ens, det = restarted.advance(lead)
        # the baseline restarts Adams-Bashforth (Euler, AB2) as the generator does at its start: a ~1 % transient
        assert np.abs((ens[0, 0] - truth) / scale).max() < 0.05
        if k == 1:  # the forcing matters: the unforced run is already off by more than that after 6 h
            assert np.abs((det[0] - truth) / scale).max() > 0.05


def _calibration(ds, inits, members, stationary):
    from sciml.forecasting.eval.metrics import latitude_weights

    pe = PhysicsEnsemble(ds, inits, members, ZUV, seed=1)
    if not stationary:
        pe.integ.forcing.zero_()
    w = latitude_weights(ds["lat"].values).values[:, None]
    out = []
    for k in (1, 2, 4):
        ens, _ = pe.advance(pd.Timedelta(hours=6 * k))
        y = np.stack([ds[c].sel(time=inits + pd.Timedelta(hours=6 * k)).values for c in ZUV], axis=1)
        mse = ((ens.mean(1) - y) ** 2 * w).mean((-2, -1)).mean(0)
        var = (ens.var(1, ddof=1) * w).mean((-2, -1)).mean(0)
        out.append(np.sqrt(var / mse * (members + 1) / members))
    return np.array(out)  # [lead, channel] corrected spread-skill ratio


def test_perfect_model_ensemble_is_calibrated():
    """A truth from the same generator lies within the perfect-model ensemble: corrected SSR ~ 1.

    16 cases (two per trajectory, 1.75 days apart) x 8 members: the bootstrap standard error over cases of the
    corrected SSR is 0.02-0.03, so the band +-0.1 is about 4 of them. Members that start with zero forcing
    instead of a stationary draw are underdispersed (0.46-0.75 at 6-24 h) and fail it.
    """
    cfg = dataclasses.replace(PRESETS["tiny"], days=4, trajectories=8, groups=1, spinup_days=2)
    ds, _ = simulate(cfg)
    nper = cfg.samples_per_trajectory
    inits = pd.DatetimeIndex(ds["time"].values[[k * nper + i for k in range(8) for i in (0, 7)]])
    ssr = _calibration(ds, inits, 8, stationary=True)
    assert np.all(np.abs(ssr - 1) < 0.1), ssr
    assert np.all(_calibration(ds, inits, 8, stationary=False) < 0.8)


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    from sciml.forecasting.data import compute_stats, source_from_dataset, stats_path, write_store
    from sciml.forecasting.eval.score import ScoreConfig, score_forecast

    root = tmp_path_factory.mktemp("phys")
    ds, _ = simulate(dataclasses.replace(PRESETS["tiny"], days=4))
    store = root / "tiny.zarr"
    src = source_from_dataset(ds, path=store)
    write_store(src, store)
    compute_stats(src).save(stats_path(store))
    inits = pd.DatetimeIndex(["2001-01-01T06", "2001-01-02T00", "2001-01-06T12"])  # the last in trajectory 1
    leads = [pd.Timedelta(hours=6 * k) for k in (1, 2, 3, 4)]
    rng = np.random.default_rng(0)
    data = {}
    for c in ZUV:
        y = np.stack([ds[c].sel(time=inits + lead).values for lead in leads], 1)[:, :, None]
        noise = rng.normal(size=(3, 4, 4, *y.shape[-2:])).astype(np.float32)
        data[c] = (("time", "prediction_timedelta", "realization", "lat", "lon"), y + noise * ds[c].values.std() * 0.1)
    coords = {"time": inits, "prediction_timedelta": leads, "realization": np.arange(4)}
    fc = xr.Dataset(data, coords={**coords, "lat": ds["lat"].values, "lon": ds["lon"].values})
    fc.to_zarr(root / "fc.zarr", zarr_format=3, consolidated=False)
    cfg = ScoreConfig(root / "fc.zarr", store, root / "s.nc", baselines=("persistence", "climatology", "physics"))
    return ds, store, root, inits, leads, score_forecast(cfg)


def test_score_physics_matches_an_independent_recomputation(scored):
    import scoringrules

    from sciml.forecasting.eval.metrics import latitude_weights

    ds, store, _, inits, leads, s = scored
    cfg = config_from_attrs(ds.attrs)
    # independent unforced run: the generator's own integrator with the forcing amplitude set to zero
    plain = dataclasses.replace(cfg, forcing_amplitude=0.0)
    model, synth = BatchedShallowWater(plain), OutputSynth(plain)
    zuv = np.stack([ds[c].sel(time=inits).values for c in ZUV], axis=1).astype(np.float64)
    state = StateAnalysis(plain)(model, torch.from_numpy(zuv))
    with torch.no_grad():
        integ = Integrator(model, state, torch.Generator().manual_seed(5))
    pe = PhysicsEnsemble(xr.open_zarr(store, consolidated=False), inits, 4, ZUV)
    w = latitude_weights(ds["lat"].values).values[:, None]
    amean = lambda a: (a * w).mean(axis=(-2, -1))  # noqa: E731
    sub = int(round(cfg.step_hours * 3600 / cfg.dt))
    for j, lead in enumerate(leads):
        with torch.no_grad():
            mid = inits + lead - pd.Timedelta(hours=3)
            for _ in range(sub):
                integ.step(torch.tensor([seasonal_factor(t) for t in mid], dtype=torch.float64))
        det = synth(model, integ.s)[:, :3].astype(np.float32)
        ens, _ = pe.advance(lead)
        y = np.stack([ds[c].sel(time=inits + lead).values for c in ZUV], axis=1).astype(np.float64)
        got = s.isel(prediction_timedelta=j)
        for k, c in enumerate(ZUV):
            g = got.sel(channel=c)
            crps = amean(scoringrules.crps_ensemble(y[:, k], ens[:, :, k], m_axis=1, estimator="fair"))
            np.testing.assert_allclose(float(g["crps_physics"]), crps.mean(), rtol=1e-5)
            np.testing.assert_allclose(g["crps_physics_cases"].values, crps, rtol=1e-5)
            rmse = np.sqrt(amean((ens[:, :, k].mean(1) - y[:, k]) ** 2).mean())
            spread = np.sqrt(amean(ens[:, :, k].var(1, ddof=1)).mean())
            np.testing.assert_allclose(float(g["ssr_physics"]), spread / rmse, rtol=1e-5)
            mae = amean(np.abs(det[:, k] - y[:, k]))
            np.testing.assert_allclose(float(g["crps_physics_deterministic"]), mae.mean(), rtol=1e-4)
            assert float(g["crps_physics"]) < float(g["crps_physics_deterministic"]) < float(g["crps_persistence"])


def test_skill_plot_draws_the_physics_baseline(scored, monkeypatch):
    from sciml.forecasting.eval import plots

    _, _, root, _, _, s = scored
    labels = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: labels.extend(fig.axes[0].get_legend_handles_labels()[1]))
    plots.plot_skill(s, root / "skill.png")
    assert {"physics", "physics deterministic", "persistence", "climatology"} <= set(labels)


def test_physics_is_refused_on_a_store_not_written_by_synth(scored, tmp_path, capsys):
    from sciml.cli import main
    from sciml.forecasting.data import source_from_dataset, write_store

    ds, store, root, _, _, _ = scored
    other = tmp_path / "plain.zarr"
    write_store(source_from_dataset(ds.assign_attrs(swe_config=""), path=other), other)
    args = ["forecast", "score", str(root / "fc.zarr"), "--truth", str(other), "--out", str(tmp_path / "s.nc")]
    capsys.readouterr()  # the store writer's log line
    assert main([*args, "--baselines", "persistence,physics"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sciml data synth" in err[0] and "--baselines" in err[0]
    assert main([*args, "--baselines", "persistence,physic"]) == 2
    assert "unknown baseline" in capsys.readouterr().err
    ok = ["-q", "forecast", "score", str(root / "fc.zarr"), "--truth", str(store), "--out", str(tmp_path / "p.nc")]
    assert main([*ok, "--baselines", "physics"]) == 0
    out = capsys.readouterr().out
    assert "phys-det" in out and "CRPS / physics" in out and "persist" not in out.splitlines()[0]


def test_bootstrap_interval_matches_the_exact_bootstrap_distribution():
    from sciml.forecasting.eval.bootstrap import ratio_interval

    rng = np.random.default_rng(3)
    a, b = rng.gamma(4.0, 1.0, 6), rng.gamma(5.0, 1.0, 6)
    # every one of the 6^6 equally likely resamples: the exact bootstrap distribution of the ratio of sums
    idx = np.array(list(itertools.product(range(6), repeat=6)))
    exact = np.quantile(a[idx].sum(1) / b[idx].sum(1), [0.05, 0.95])
    iv = ratio_interval(np.append(a, np.nan), np.append(b, 1.0), resamples=40000, level=0.9, seed=1)
    assert iv.n == 6 and iv.value == pytest.approx(a.sum() / b.sum(), rel=1e-12)
    np.testing.assert_allclose([iv.low, iv.high], exact, rtol=0.01)
    wide = ratio_interval(a, b, resamples=40000, level=0.99, seed=1)
    assert wide.low < iv.low < iv.value < iv.high < wide.high


def test_full_demo_report_gives_ratios_to_the_perfect_model_with_intervals(scored, tmp_path):
    import json

    from sciml.forecasting.demo import FULL_DEMO, MISSED_EXIT, demo_report, summary
    from sciml.forecasting.eval.bootstrap import ratio_interval

    _, _, _, _, _, s = scored
    assert "physics" in FULL_DEMO.baselines and FULL_DEMO.n_inits >= 48
    lines, status = summary(FULL_DEMO, s, tmp_path, [tmp_path / "skill.png"])
    text = "\n".join(lines)
    assert "CRPS ratios, 95% bootstrap intervals over cases:" in text and "CRPS / physics" in text
    z6 = next(ln for ln in lines[2].splitlines() if ln.startswith("z500") and " 6h" in ln)
    a = s["crps_cases"].sel(channel="z500").isel(prediction_timedelta=0).values
    b = s["crps_physics_cases"].sel(channel="z500").isel(prediction_timedelta=0).values
    assert ratio_interval(a, b).text() in z6
    _, ok = FULL_DEMO.expectations.report(s)
    assert status == (0 if ok else MISSED_EXIT)
    timings = {f"{k}{u}": 1.0 for k in ("train", "infer", "score") for u in ("_s", "_cpu_s")}
    facts = {"config": "demo", "members": 4, "steps": 540, "inits": ["2004-01-01"]}
    rep = json.loads(json.dumps(demo_report(FULL_DEMO, s, facts, timings)))
    assert rep["passed"] is ok and len(rep["ratios"]) == 3 * 4 and rep["timings"] == timings
    row = rep["ratios"][0]
    assert set(row) >= {"crps", "crps_physics", "ratio_physics", "ratio_persistence", "ratio_climatology"}
    # bench/tables.py renders the report (copied to bench/results/full_demo.json) at the printed leads
    tables = runpy.run_path(str(Path(__file__).resolve().parents[1] / "bench" / "tables.py"))
    table = tables["full_demo"]("full_demo.json", rep)
    assert len([ln for ln in table if ln.startswith("| z500 |")]) == 2  # 6 h and 24 h of the 4 leads scored
    assert f"{row['ratio_physics'][0]:.2f} [{row['ratio_physics'][1]:.2f}, {row['ratio_physics'][2]:.2f}]" in (
        "\n".join(table)
    )
    # a full bench variant's row keeps the ratios at 6 h, 1, 3 and 5 d, and its table shows the worst per group
    bench = runpy.run_path(str(Path(__file__).resolve().parents[1] / "bench" / "forecast_experiments.py"))
    kept = bench["physics_ratios"](rep)
    assert kept["n_cases"] == 1 and {r["lead_hours"] for r in kept["ratio_physics"]} == {6.0, 24.0}
    z24 = next(r["ratio_physics"][0] for r in rep["ratios"] if r["channel"] == "z500" and r["lead_hours"] == 24.0)
    assert tables["_physics_cell"](kept).startswith(f"z500 {z24:.2f}; winds ")
    assert bench["physics_ratios"]({"ratios": [{"channel": "z500", "lead_hours": 24.0}]}) == {}
    # a variant that failed before it was scored is listed with its error
    failed = tables["forecast_experiments"]("x.json", {"rows": [{"variant": "v", "rc": -9, "error": "exit -9"}]})
    assert failed[-1] == "| `v` | - | - | - | - | - | - | failed: exit -9 |"


def test_cases_without_a_verifying_time_are_left_out_of_means_and_intervals(scored, tmp_path):
    from sciml.forecasting.eval.bootstrap import ratio_rows
    from sciml.forecasting.eval.score import ScoreConfig, score_forecast

    ds, store, _, _, _, _ = scored
    inits = pd.DatetimeIndex([ds["time"].values[4], ds["time"].values[-2]])  # the second verifies at 6 h only
    leads = [pd.Timedelta(hours=6), pd.Timedelta(hours=12)]
    y = np.stack([ds["z500"].sel(time=inits[0] + lead).values for lead in leads])
    fc = np.broadcast_to(y[None, :, None], (2, 2, 3, *y.shape[-2:])) + np.arange(3.0)[:, None, None] * 50.0
    coords = {"time": inits, "prediction_timedelta": leads, "realization": np.arange(3)}
    dims = ("time", "prediction_timedelta", "realization", "lat", "lon")
    f = xr.Dataset({"z500": (dims, fc.astype(np.float32))}, coords={**coords, "lat": ds["lat"], "lon": ds["lon"]})
    f.to_zarr(tmp_path / "f.zarr", zarr_format=3, consolidated=False)
    s = score_forecast(ScoreConfig(tmp_path / "f.zarr", store, tmp_path / "s.nc", baselines=("physics",)))
    assert s["n_cases"].values.tolist() == [2, 1]
    cases = s["crps_physics_cases"].sel(channel="z500").values
    assert np.isfinite(cases[0]).all() and np.isfinite(cases[1, 0]) and np.isnan(cases[1, 1])
    np.testing.assert_allclose(s["crps_physics"].sel(channel="z500").values, np.nanmean(cases, axis=1), rtol=1e-12)
    assert [r["n_cases"] for r in ratio_rows(s)] == [2, 1]
