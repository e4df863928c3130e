"""Forecast training: config, LR schedule, atomic and safe checkpoints, loss decrease, exact resume, NaN policy.

Everything runs the ``tiny`` model on a small shallow-water store built once per module (~10 s).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import torch

from sciml.config import ConfigError
from sciml.errors import UsageError
from sciml.forecasting.train import (
    NonFiniteError,
    StageConfig,
    Trainer,
    TrainHooks,
    load_checkpoint,
    load_train_config,
    lr_factor,
    save_checkpoint,
)


@pytest.fixture(scope="module")
def store(tiny_store: Path) -> Path:
    return tiny_store


def tiny_config(store: Path, **changes):
    over = {"data.store": str(store), "validation.samples": 2, "validation.every": 100}
    over.update(changes)
    return load_train_config("tiny", over)


# ------------------------------------------------------------------------------------------------ config
def test_builtin_configs_load_and_unknown_keys_fail(tmp_path):
    for name in ("tiny", "quick", "demo", "full"):
        cfg = load_train_config(name)
        assert cfg.total_steps == sum(s.steps for s in cfg.stages)
    demo = load_train_config("demo")
    assert demo.stages[0].members == 4 and demo.stages[-1].crps == "fair" and demo.stages[-1].rollout == 16
    assert demo.stages[0].betas == (0.9, 0.95) and demo.stages[0].clip == 32.0
    # `full` is demo.yaml trained longer, nothing else: pretraining x2, fine-tuning x8 at twice the rates
    full = load_train_config("full")
    pretrain, finetune = {"steps": 2}, {"steps": 8, "lr": 2}
    longer = tuple(
        dataclasses.replace(s, **{k: f * getattr(s, k) for k, f in (pretrain if i < 2 else finetune).items()})
        for i, s in enumerate(demo.stages)
    )
    assert full == dataclasses.replace(demo, name="full", stages=longer) and full.total_steps == 2160
    # `--set` values are YAML: 5e-05 (no dot) is a string to YAML 1.1 and still a learning rate here
    from sciml.forecasting.cli.common import parse_set

    assert load_train_config("demo", parse_set(["stages.2.lr=5e-05"])).stages[2].lr == 5e-05
    bad = tmp_path / "bad.yaml"
    bad.write_text("stages: [{name: a, steps: 1, lern_rate: 1}]\n")
    with pytest.raises(ConfigError, match="lern_rate"):
        load_train_config(bad)
    odd = tmp_path / "odd.yaml"
    odd.write_text("stages: [{name: a, steps: 1, members: 3, centered: true}]\n")
    with pytest.raises(ConfigError, match="even"):
        load_train_config(odd)
    pair = tmp_path / "pair.yaml"  # 2 antithetic members leave no independent pair for the CRPS spread term
    pair.write_text("stages: [{name: a, steps: 1, members: 2, centered: true}]\n")
    with pytest.raises(ConfigError, match=">= 4.*centered: false"):
        load_train_config(pair)
    with pytest.raises(UsageError, match="built-in"):
        load_train_config("no-such-config")


def test_stage_spectral_weight_overrides_the_loss_section():
    from sciml.forecasting.losses import CombinedLoss, GridCRPSLoss
    from sciml.forecasting.models import preset
    from sciml.forecasting.train.objective import make_loss, spectral_weight

    cfg = load_train_config("tiny", {"loss.spectral_weight": 0.3, "stages.1.spectral_weight": 0.0})
    cfg = dataclasses.replace(
        cfg, stages=(*cfg.stages, dataclasses.replace(cfg.stages[0], name="x", spectral_weight=2))
    )
    mc = preset("tiny")
    assert [spectral_weight(cfg, s) for s in cfg.stages] == [0.3, 0.0, 2.0]
    first, second, third = (make_loss(cfg, s, mc, None) for s in cfg.stages)
    assert isinstance(first, CombinedLoss) and first.weights == (1.0, 0.3)
    assert isinstance(second, GridCRPSLoss)
    assert third.weights == (1.0, 2.0)
    with pytest.raises(ConfigError, match="spectral_weight must be >= 0"):
        load_train_config("tiny", {"stages.0.spectral_weight": -1.0})
    for bad in (0.0, 1.5):
        with pytest.raises(ConfigError, match=r"loss.spectral_floor must be in \(0, 1\]"):
            load_train_config("tiny", {"loss.spectral_floor": bad})


def test_lr_schedule_closed_forms():
    s = StageConfig(name="a", steps=110, lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_factor(s, 0) == pytest.approx(0.1) and lr_factor(s, 9) == pytest.approx(1.0)
    assert lr_factor(s, 10) == pytest.approx(1.0)
    assert lr_factor(s, 60) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_factor(s, 110) == pytest.approx(0.1)
    st = dataclasses.replace(s, schedule="step", warmup_steps=0, step_every=7, step_gamma=0.5)
    assert [lr_factor(st, k) for k in (0, 6, 7, 15)] == [1.0, 1.0, 0.5, 0.25]


# ------------------------------------------------------------------------------------------------ checkpoints
def _payload(value: float) -> dict:
    return {
        "model": {"w": torch.full((64, 64), value)},
        "model_config": {},
        "config": {},
        "position": {"step": int(value)},
        "data": {},
    }


def test_crash_mid_write_keeps_previous_checkpoint(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, _payload(1.0))
    # A real crash: the process dies (os._exit) after writing half of the new checkpoint.
    script = textwrap.dedent(
        f"""
        import os, torch
        from sciml.forecasting import checkpoint as ck
        real = torch.save
        def half_then_die(obj, f):
            real(obj, f)
            f.flush()
            f.truncate(f.tell() // 2)
            f.close()
            os._exit(9)
        ck.torch.save = half_then_die
        ck.save_checkpoint({str(path)!r}, {{"model": {{"w": torch.full((64, 64), 2.0)}}, "model_config": {{}},
                           "config": {{}}, "position": {{"step": 2}}, "data": {{}}}})
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 9, proc.stderr
    back = load_checkpoint(path)
    assert back["position"]["step"] == 1 and torch.equal(back["model"]["w"], torch.full((64, 64), 1.0))
    # the half-written file exists (in the temporary sibling) and is refused with a clear error
    partial = [p for p in tmp_path.rglob("checkpoint.pt") if p != path]
    assert partial, "the crashed writer should have left its temporary file"
    with pytest.raises(UsageError, match="cannot be loaded safely"):
        load_checkpoint(partial[0])


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_checkpoint_with_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    torch.save({"format": "sciml.forecast.train/1", "model": _Evil()}, path)
    with pytest.raises(UsageError, match="weights_only"):
        load_checkpoint(path)
    assert not (tmp_path / "PWNED").exists()
    with pytest.raises(UsageError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


# ------------------------------------------------------------------------------------------------ training
def test_tiny_training_lowers_validation_crps(store, tmp_path):
    cfg = tiny_config(store, **{"validation.every": 10, "stages.0.steps": 12, "stages.1.steps": 4})
    tr = Trainer(cfg, tmp_path / "run")
    before = tr.validate()["val_crps"]
    assert tr.run() == "done"
    after = tr.log.valid[-1]["val_crps"]
    # fixed held-out windows and fixed validation noise: the only change is the training
    assert after < 0.97 * before, (before, after)
    assert all(math.isfinite(r["loss"]) for r in tr.log.train)
    for name in ("checkpoint.pt", "train.csv", "valid.csv", "metrics.json"):
        assert (tmp_path / "run" / name).stat().st_size > 0
    ck = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert ck["position"]["step"] == cfg.total_steps
    assert ck["model_config"]["nlat"] == 33 and ck["data"]["channels"] == ["z500", "u500", "v500"]


class _KillAt(TrainHooks):
    """Simulates a kill: raises inside step ``at`` (after the last periodic checkpoint)."""

    def __init__(self, at: int) -> None:
        self.at, self.calls = at, 0

    def reduce_mean(self, values):
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt
        return values


@pytest.mark.parametrize("degrees", ["uniform", "whitened", "whitened-modes"])
def test_resume_continues_the_exact_loss_trajectory(store, tmp_path, degrees):
    # per-mode weights run with the winds as one vector field (the demo's setting)
    vectors = [["u500", "v500"]] if degrees == "whitened-modes" else []
    cfg = tiny_config(store, checkpoint_every=3, **{"loss.spectral_degrees": degrees, "loss.spectral_vectors": vectors})
    ref = Trainer(cfg, tmp_path / "ref")
    ref.run()
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg, tmp_path / "run", hooks=_KillAt(5)).run()  # dies in step 5; last checkpoint at step 3
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["position"]["step"] == 3
    resumed = Trainer(cfg, tmp_path / "run", resume=tmp_path / "run" / "checkpoint.pt")
    assert resumed.step == 3
    resumed.run()
    a = [r["loss"] for r in ref.log.train]
    b = [r["loss"] for r in resumed.log.train]
    assert len(a) == len(b) == cfg.total_steps
    # resumed mid-stage (Adam moments, LR schedule, noise streams, data order) and across the stage boundary
    assert b == pytest.approx(a, rel=1e-6, abs=0), list(zip(a, b, strict=True))
    for p, q in zip(ref.model.parameters(), resumed.model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-7)
    if degrees != "uniform":  # rebuilt from the same training states on resume: per channel and degree (or mode)
        assert resumed.degree_weights.shape == ((3, 17) if degrees == "whitened" else (3, 17, 17))
        torch.testing.assert_close(resumed.degree_weights, ref.degree_weights, rtol=0, atol=0)
        spectral = resumed.stage.loss.losses[1]
        torch.testing.assert_close(spectral.degree_weights, ref.degree_weights)


def test_two_step_model_trains_sees_the_previous_state_and_resumes_exactly(store, tmp_path):
    """``model.overrides.input_steps: 2``: the tendency scale is sigma / sigma_dt of the statistics file (read with
    xarray), batches carry the state one step before the input, the loss depends on it, validation CRPS falls,
    and a run killed mid-stage resumes with the uninterrupted run's losses."""
    import numpy as np
    import xarray as xr

    from sciml.forecasting.data import stats_path

    over = {"model.overrides.input_steps": 2, "checkpoint_every": 3, "validation.every": 10}
    cfg = tiny_config(store, **over, **{"stages.0.steps": 12, "stages.1.steps": 4})
    ref = Trainer(cfg, tmp_path / "ref")
    assert ref.mc.input_steps == 2
    with xr.open_dataset(stats_path(store), engine="h5netcdf") as st:
        sub = st.sel(channel=list(ref.facts.channels))
        want = (sub["std"] / sub["diff_std"]).values
    assert np.all(want > 1.5)  # a 6 h tendency is smaller than the state's spread: the scale is not a no-op
    torch.testing.assert_close(ref.model.tendency_scale, torch.as_tensor(want, dtype=torch.float32))
    # a batch's previous state is the store's state one step (6 h) before the input
    st0 = ref._enter_stage(0)
    batch = ref.batch(st0, 0)
    assert batch["previous"].shape == (batch["input"].shape[0], 1, *batch["input"].shape[1:])
    ds = ref.dataset(1, "train")
    times = ds.sample_times()
    assert times[0] == ds._meta.times[0] + pd.Timedelta(hours=6)  # the first time has no previous state
    gens = [g.get_state() for g in st0.noise.generators]
    losses = []
    for prev in (batch["previous"], batch["input"][:, None]):  # the same noise draws for both
        for g, state in zip(st0.noise.generators, gens, strict=True):
            g.set_state(state)
        with torch.no_grad():
            args = (batch["input"], batch["aux"], 1, st0.noise, batch["target"], st0.loss, prev)
            losses.append(float(ref.forward_rollout(*args)))
    assert abs(losses[0] - losses[1]) > 1e-4 * abs(losses[0]), losses
    st0.batches.close()
    ref.stage = None  # run() enters stage 0 afresh (its own noise streams)
    before = ref.validate()["val_crps"]
    assert ref.run() == "done"
    assert ref.log.valid[-1]["val_crps"] < 0.97 * before
    losses = [r["loss"] for r in ref.log.train]
    assert len(losses) == cfg.total_steps and all(math.isfinite(x) for x in losses)
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg, tmp_path / "run", hooks=_KillAt(5)).run()  # dies in step 5; last checkpoint at step 3
    resumed = Trainer(cfg, tmp_path / "run", resume=tmp_path / "run" / "checkpoint.pt")
    assert resumed.step == 3 and "tendency_scale" in load_checkpoint(tmp_path / "run" / "checkpoint.pt")["model"]
    resumed.run()
    assert [r["loss"] for r in resumed.log.train] == pytest.approx(losses, rel=1e-6, abs=0)


def test_degree_one_winds_resolve_by_name_take_the_statistics_learn_and_resume_exactly(store, tmp_path):
    """``model.degree_one_winds: [[u500, v500]]``: the pair resolves to the channel indices, the map keeps the
    statistics' mean and std of those channels (read with xarray), its parameters move from the identity in
    training, inference rebuilds the model from the checkpoint, and a killed run resumes with the same losses.
    Names that are not data channels and an index override are refused."""
    import numpy as np
    import xarray as xr

    from sciml.forecasting.data import stats_path
    from sciml.forecasting.infer import LoadedModel

    over = {"model.degree_one_winds": [["u500", "v500"]], "checkpoint_every": 3}
    cfg = tiny_config(store, **over, **{"stages.0.steps": 4, "stages.1.steps": 2})
    ref = Trainer(cfg, tmp_path / "ref")
    channels = ref.facts.channels
    assert ref.mc.degree_one_pairs == ((channels.index("u500"), channels.index("v500")),)
    with xr.open_dataset(stats_path(store), engine="h5netcdf") as st:
        sub = st.sel(channel=["u500", "v500"])
        mean, std = sub["mean"].values, sub["std"].values
    assert np.all(std > 1.0)
    torch.testing.assert_close(ref.model.degree_one.mean, torch.as_tensor(mean[None], dtype=torch.float32))
    torch.testing.assert_close(ref.model.degree_one.std, torch.as_tensor(std[None], dtype=torch.float32))
    assert ref.run() == "done"
    assert float((ref.model.degree_one.axial.detach() - torch.eye(2)).abs().max()) > 1e-5
    loaded = LoadedModel(tmp_path / "ref" / "checkpoint.pt").model
    torch.testing.assert_close(loaded.degree_one.equatorial, ref.model.degree_one.equatorial)
    torch.testing.assert_close(loaded.degree_one.std, ref.model.degree_one.std)
    losses = [r["loss"] for r in ref.log.train]
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg, tmp_path / "run", hooks=_KillAt(5)).run()  # dies in step 5; last checkpoint at step 3
    resumed = Trainer(cfg, tmp_path / "run", resume=tmp_path / "run" / "checkpoint.pt")
    resumed.run()
    assert [r["loss"] for r in resumed.log.train] == pytest.approx(losses, rel=1e-6, abs=0)
    with pytest.raises(UsageError, match="degree_one_winds entry.*z500, u500, v500"):
        Trainer(tiny_config(store, **{"model.degree_one_winds": [["u850", "v500"]]}), tmp_path / "bad")
    with pytest.raises(UsageError, match="name the wind channels in model.degree_one_winds"):
        Trainer(tiny_config(store, **{"model.overrides.degree_one_pairs": [[1, 2]]}), tmp_path / "bad2")


def test_loader_workers_give_the_losses_of_the_in_process_loader(store, tmp_path):
    """runtime.loader_workers 2 (prefetch 1) trains with exactly the losses of 0 workers (a loop over the dataset
    in the training process), straight through and resumed mid-stage after a kill."""
    over = {"checkpoint_every": 3, "stages.0.steps": 4, "stages.1.steps": 2}
    ref = Trainer(tiny_config(store, **over), tmp_path / "ref")
    ref.run()
    cfg = tiny_config(store, **over, **{"runtime.loader_workers": 2, "runtime.prefetch": 1})
    full = Trainer(cfg, tmp_path / "full")
    full.run()
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg, tmp_path / "run", hooks=_KillAt(5)).run()  # dies in step 5; last checkpoint at step 3
    resumed = Trainer(cfg, tmp_path / "run", resume=tmp_path / "run" / "checkpoint.pt")
    resumed.run()
    a = [r["loss"] for r in ref.log.train]
    assert len(a) == 6 and all(math.isfinite(x) for x in a)
    assert [r["loss"] for r in full.log.train] == a
    assert [r["loss"] for r in resumed.log.train] == a


@pytest.mark.parametrize("floor", [None, 1e-3])
def test_whitened_degree_weights_come_from_training_states(store, floor):
    """Independent recomputation: the training windows' states through torch-harmonics' SHT, then the formula
    (default whitening floor 0.01, and a configured one)."""
    import torch_harmonics as th

    from sciml.forecasting.data import ForecastDataset

    over = {"loss.spectral_degrees": "whitened", "loss.spectral_samples": 5}
    cfg = tiny_config(store, **over, **({} if floor is None else {"loss.spectral_floor": floor}))
    tr = Trainer(cfg, store.parent / "unused")
    ds = ForecastDataset(cfg.data, 1, start=cfg.data.train_start, end=cfg.data.train_end)
    idx = [round(i * (len(ds) - 1) / 4) for i in range(5)]
    x = torch.stack([ds[i]["input"] for i in idx]).double()  # [5, C, 33, 64]
    coeffs = th.RealSHT(33, 64, lmax=17, mmax=17, norm="ortho").double()(x)
    power = (coeffs.abs() ** 2 * torch.tensor([1.0] + [2.0] * 16, dtype=torch.float64)).sum(-1).mean(0)  # [C, 17]
    modes = 2 * torch.arange(17, dtype=torch.float64) + 1
    a = (power / modes).sqrt()
    a_floor = torch.maximum(a, (floor or 1e-2) * a.max(-1, keepdim=True).values)
    expected = (modes * a).sum(-1, keepdim=True) / (17 * modes * a_floor)
    torch.testing.assert_close(tr.degree_weights.double(), expected, rtol=1e-5, atol=0)
    if floor is not None:  # the configured floor changes some weights on this data, so the check can fail
        assert (a < 1e-2 * a.max(-1, keepdim=True).values).any()


@pytest.mark.parametrize("floor", [None, 1e-3])
def test_whitened_mode_weights_of_a_wind_pair_come_from_training_states(store, floor):
    """Independent recomputation: z500 through RealSHT, (u500, v500) as (-v, u) through RealVectorSHT, then the
    per-mode formula with one constant for all channels (default floor 0.01 and a configured one); the spectral
    loss scores the pair as S and T."""
    import torch_harmonics as th

    from sciml.forecasting.data import ForecastDataset

    over = {
        "loss.spectral_degrees": "whitened-modes",
        "loss.spectral_samples": 5,
        "loss.spectral_vectors": [["u500", "v500"]],
    }
    cfg = tiny_config(store, **over, **({} if floor is None else {"loss.spectral_floor": floor}))
    tr = Trainer(cfg, store.parent / "unused")
    assert tr.vector_pairs == ((1, 2),)
    ds = ForecastDataset(cfg.data, 1, start=cfg.data.train_start, end=cfg.data.train_end)
    x = torch.stack([ds[round(i * (len(ds) - 1) / 4)]["input"] for i in range(5)]).double()  # [5, 3, 33, 64]
    z = th.RealSHT(33, 64, lmax=17, mmax=17, norm="ortho").double()(x[:, 0])
    st = th.RealVectorSHT(33, 64, lmax=17, mmax=17, norm="ortho").double()(torch.stack([-x[:, 2], x[:, 1]], 1))
    a = torch.stack([z, st[:, 0], st[:, 1]], 1).abs().pow(2).mean(0).sqrt()  # [3, 17, 17]
    cm = torch.tril(torch.full((17, 17), 2.0, dtype=torch.float64))
    cm[:, 0] = 1.0
    k = (cm * a).sum() / 3
    top = a.flatten(1).max(-1).values[:, None, None]
    modes = (2 * torch.arange(17, dtype=torch.float64) + 1)[:, None]
    expected = k / (17 * modes * torch.maximum(a, (floor or 1e-2) * top)) * (cm > 0)
    torch.testing.assert_close(tr.degree_weights.double(), expected, rtol=1e-5, atol=0)
    if floor is not None:
        assert ((a < 1e-2 * top) & (cm > 0)).any()
    spectral = tr._enter_stage(0).loss.losses[1]
    assert spectral.transform.pairs == ((1, 2),)


def test_spectral_vectors_must_name_forecast_channels(store, tmp_path):
    cfg = tiny_config(store, **{"loss.spectral_vectors": [["u850", "v850"]]})
    with pytest.raises(UsageError, match="u850, v850, not a forecast channel"):
        Trainer(cfg, tmp_path / "run")
    with pytest.raises(ConfigError, match="distinct"):
        tiny_config(store, **{"loss.spectral_vectors": [["u500", "u500"]]})
    with pytest.raises(ConfigError, match="spectral_degrees"):
        tiny_config(store, **{"loss.spectral_degrees": "whitened-lm"})


def test_spectral_channel_scale_multiplies_the_spectral_channel_weights(store, tmp_path):
    from sciml.forecasting.train.objective import spectral_channel_weights

    cfg = tiny_config(store, **{"loss.spectral_channel_scale": {"z500": 2.0}})
    names = ("z500", "u500", "v500")
    torch.testing.assert_close(
        spectral_channel_weights(cfg, names, None), torch.tensor([2 / 3, 1 / 3, 1 / 3], dtype=torch.float64)
    )
    auto = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)
    torch.testing.assert_close(spectral_channel_weights(cfg, names, auto), auto * torch.tensor([2.0, 1.0, 1.0]))
    assert spectral_channel_weights(tiny_config(store), names, auto) is None  # no scale: the grid weights
    tr = Trainer(cfg, tmp_path / "run")
    spectral = tr._enter_stage(0).loss.losses[1]
    torch.testing.assert_close(spectral.channel_weights.double(), spectral_channel_weights(cfg, names, None))
    with pytest.raises(UsageError, match="t850, not a forecast channel"):
        Trainer(tiny_config(store, **{"loss.spectral_channel_scale": {"t850": 2.0}}), tmp_path / "bad")
    with pytest.raises(ConfigError, match="must be >= 0"):
        tiny_config(store, **{"loss.spectral_channel_scale": {"z500": -1.0}})


def test_resume_with_a_config_for_another_grid_or_model_fails(store, tmp_path):
    cfg = tiny_config(store, **{"stages.0.steps": 1, "stages.1.steps": 1})
    Trainer(cfg, tmp_path / "run").run()
    other = tiny_config(store, **{"stages.0.steps": 1, "stages.1.steps": 1, "model.overrides.atmo_embed_dim": 8})
    with pytest.raises(UsageError, match="differs from the checkpoint"):
        Trainer(other, tmp_path / "run", resume=tmp_path / "run" / "checkpoint.pt")


class _NaNAt(TrainHooks):
    """Makes the loss NaN on the ``at``-th training step."""

    def __init__(self, at: int) -> None:
        self.at, self.calls = at, 0

    def make_loss(self, loss):
        hooks = self

        class Poisoned(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.inner = loss

            def forward(self, fc, y):
                out = self.inner(fc, y)
                return out * float("nan") if hooks.calls + 1 == hooks.at else out

        return Poisoned()

    def reduce_mean(self, values):
        self.calls += 1
        return values


def test_nan_loss_stops_and_keeps_last_good_checkpoint(store, tmp_path):
    cfg = tiny_config(store, checkpoint_every=2)
    tr = Trainer(cfg, tmp_path / "run", hooks=_NaNAt(4))
    with pytest.raises(NonFiniteError, match=r"non-finite loss nan at step 4 .*last good checkpoint"):
        tr.run()
    ck = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert ck["position"]["step"] == 2
    assert all(torch.isfinite(v).all() for v in ck["model"].values() if v.is_floating_point())


def test_nan_loss_skip_policy(store, tmp_path):
    cfg = tiny_config(store, nan_policy="skip", **{"stages.0.steps": 4, "stages.1.steps": 1})
    tr = Trainer(cfg, tmp_path / "run", hooks=_NaNAt(2))
    before = {k: v.clone() for k, v in tr.model.state_dict().items()}
    assert tr.run() == "done"
    bad = [r["bad"] for r in tr.log.train]
    assert bad == [0.0, 1.0, 0.0, 0.0, 0.0]
    assert all(torch.isfinite(p).all() for p in tr.model.parameters())
    assert any(not torch.equal(before[k], v) for k, v in tr.model.state_dict().items())


def test_cli_train_and_resume(store, tmp_path, capsys):
    from sciml.cli import main

    out = tmp_path / "cli"
    args = ["forecast", "train", "--config", "tiny", "--out", str(out), "--set", f"data.store={store}"]
    args += ["--set", "stages.0.steps=2", "--set", "stages.1.steps=1", "--set", "validation.every=100"]
    assert main([*args, "--max-steps", "2"]) == 0
    assert load_checkpoint(out / "checkpoint.pt")["position"]["step"] == 2
    assert (out / "config.yaml").is_file() and (out / "run.json").is_file()
    assert main([*args, "--resume"]) == 0
    assert "step 3/3" in capsys.readouterr().out
    run = json.loads((out / "run.json").read_text())  # rewritten at the end: the whole run's wall time
    assert run["status"] == "done" and run["wall_time_s"] >= run["timings_s"]["train_steps"] > 0
    assert main(["forecast", "train", "--config", "tiny", "--out", str(out), "--set", "data.store=nowhere.zarr"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sciml data synth" in err[0]


def test_sigusr1_checkpoints_and_stops_then_resume_finishes(store, tmp_path):
    """The SLURM path: SIGUSR1 before the time limit -> checkpoint and exit 3 (resume me); a requeued job resumes."""
    import signal
    import time

    out = tmp_path / "sig"
    cmd = [sys.executable, "-m", "sciml.cli", "forecast", "train", "--config", "tiny", "--out", str(out)]
    cmd += ["--set", f"data.store={store}", "--set", "stages.0.steps=40", "--set", "stages.1.steps=1"]
    cmd += ["--set", "checkpoint_every=1000", "--set", "validation.every=1000"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / "config.yaml").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGUSR1)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 3, stderr
    assert stdout.startswith("interrupted"), stdout
    step = load_checkpoint(out / "checkpoint.pt")["position"]["step"]
    assert 1 <= step < 41
    done = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.startswith("done: step 41/41"), done.stderr


def test_centred_stages_score_without_partner_pairs():
    """A stage with antithetic noise gets the partner-free CRPS kernel; independent noise the ordinary one."""
    from sciml.forecasting.train.config import StageConfig
    from sciml.forecasting.train.objective import crps_kernel

    for crps, alpha in (("standard", 0.0), ("fair", 1.0), ("almost-fair", 0.95)):
        anti = crps_kernel(StageConfig(name="a", steps=1, members=4, crps=crps, centered=True))
        plain = crps_kernel(StageConfig(name="b", steps=1, members=4, crps=crps))
        assert anti.antithetic and not plain.antithetic
        assert anti.alpha == plain.alpha == alpha
