"""Distributed ``sciml forecast infer`` against the serial inference (gloo, CPU, forked ranks, one thread each).

One tiny model is trained for two steps (serially) on a small shallow-water store; the serial inference from its
checkpoint is the reference. Then, from the same checkpoint and seed:

* 4 ranks run ``sciml forecast infer ... --h-parallel 2 --w-parallel 2`` through the real CLI (uneven 17/16
  latitude tiles of the 33 x 64 grid), then, in the same job, 2 ensemble x 2 batch ranks (members and initial
  times split), antithetic noise;
* 2 ranks run ``--ensemble-parallel 2``;
* 2 ranks run with a writer that fails: every rank stops with the error, and no store is left.

Each distributed store must equal the serial one: same coordinates, attributes and chunks, values within
``1e-5 * max|x|`` per variable (float32; z500 is ~5e4 m2 s-2, so an absolute 1e-5 is below float32's resolution).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from sciml.errors import UsageError
from sciml.forecasting.data import PRESETS as DATA_PRESETS
from sciml.forecasting.data import compute_stats, simulate, source_from_dataset, stats_path, write_store
from sciml.forecasting.distributed.spawn import run_local
from sciml.forecasting.infer import InferConfig, LoadedModel, ZarrForecastWriter, run_inference

pytestmark = pytest.mark.distributed

INITS = ("2001-01-01T12", "2001-01-02T00")
LEAD, MEMBERS, SEED = "12h", 4, 3
REL_TOL = 1e-5


def _cli(argv: list[str]) -> None:
    from sciml.cli import main

    code = main(argv)
    if code != 0:
        raise SystemExit(code)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from sciml.forecasting.train import Trainer, load_train_config

    root = tmp_path_factory.mktemp("dinfer")
    store = root / "swe.zarr"
    ds, _ = simulate(dataclasses.replace(DATA_PRESETS["tiny"], days=2, spinup_days=0.5, trajectories=1))
    src = source_from_dataset(ds)
    write_store(src, store)
    compute_stats(src).save(stats_path(store))
    overrides = {"data.store": str(store), "data.valid_start": None, "stages.0.steps": 1, "stages.1.steps": 1}
    Trainer(load_train_config("tiny", overrides), root / "run").run()
    ckpt = root / "run" / "checkpoint.pt"
    refs = {}
    for centered in (False, True):
        refs[centered] = root / f"serial-{int(centered)}.zarr"
        cfg = InferConfig(ckpt, INITS, LEAD, MEMBERS, refs[centered], seed=SEED, centered=centered)
        run_inference(cfg)
    return {"root": root, "ckpt": ckpt, "refs": refs}


def _distributed(cfg, parallel):
    """``sciml forecast infer``'s parallel path: the run's context, the tiled inference on it, closed after."""
    from sciml.forecasting.cli.parallel import parallel_context
    from sciml.forecasting.distributed.infer import run_distributed_inference

    with parallel_context(parallel) as ctx:
        return run_distributed_inference(cfg, ctx)


def _four_ranks(ckpt: str, root: str, report: str) -> None:
    from sciml.forecasting.distributed.context import ParallelConfig, init_parallel

    # this context owns torch.distributed; the runs below join it (a second rendezvous on the port would race)
    base = init_parallel(ParallelConfig(timeout_s=60))

    common = ["forecast", "infer", "--checkpoint", ckpt, "--lead", LEAD, "--members", str(MEMBERS)]
    common += ["--seed", str(SEED)]
    for t in INITS:
        common += ["--init", t]
    _cli([*common, "--out", f"{root}/hw.zarr", "--h-parallel", "2", "--w-parallel", "2", "--comm-timeout", "60"])
    cfg = InferConfig(Path(ckpt), INITS, LEAD, MEMBERS, Path(f"{root}/eb.zarr"), seed=SEED, centered=True)
    res = _distributed(cfg, ParallelConfig(ensemble=2, timeout_s=60))
    if res["writer"]:
        Path(report).write_text(json.dumps(res["layout"]))
    base.close()


def _two_ranks(ckpt: str, root: str, report: str) -> None:
    from sciml.forecasting.distributed.context import ParallelConfig, init_parallel

    base = init_parallel(ParallelConfig(timeout_s=60))

    errors = []
    try:  # 3 members cannot be split over 2 ensemble ranks: every rank refuses, none waits for the others
        bad = InferConfig(Path(ckpt), INITS, LEAD, 3, Path(f"{root}/bad.zarr"), seed=SEED)
        _distributed(bad, ParallelConfig(ensemble=2, timeout_s=60))
    except UsageError as e:
        errors.append(str(e))
    cfg = InferConfig(Path(ckpt), INITS, LEAD, MEMBERS, Path(f"{root}/ens.zarr"), seed=SEED, device="cpu")
    res = _distributed(cfg, ParallelConfig(ensemble=2, timeout_s=60))  # gloo: the CPU, as asked
    Path(f"{report}.{int(res['writer'])}").write_text(json.dumps({"errors": errors, "layout": res["layout"]}))
    base.close()


@pytest.fixture(scope="module")
def distributed(setup):
    root, ckpt = setup["root"] / "dist", str(setup["ckpt"])
    root.mkdir()
    run = run_local(_four_ranks, 4, args=(ckpt, str(root), str(root / "four.json")), timeout_s=120)
    assert run.ok, f"4-rank inference failed: {run}"
    run = run_local(_two_ranks, 2, args=(ckpt, str(root), str(root / "two.json")), timeout_s=120)
    assert run.ok, f"2-rank inference failed: {run}"
    return root


def _assert_same_store(got_path: Path, ref_path: Path) -> None:
    with xr.open_zarr(got_path, consolidated=False) as got, xr.open_zarr(ref_path, consolidated=False) as ref:
        assert sorted(got.data_vars) == sorted(ref.data_vars)
        assert got.attrs == ref.attrs  # same checkpoint, seed, members, antithetic flag
        for c in ref.coords:
            np.testing.assert_array_equal(got[c].values, ref[c].values)
        for v in ref.data_vars:
            a, b = got[v].values, ref[v].values
            assert a.dtype == b.dtype == np.float32 and a.shape == b.shape
            assert got[v].encoding["chunks"] == ref[v].encoding["chunks"]
            assert got[v].attrs == ref[v].attrs
            scale = float(np.abs(b).max())
            err = float(np.abs(a.astype(np.float64) - b).max())
            assert err <= REL_TOL * scale, (v, err, scale)


def test_reference_exercises_noise_and_members(setup):
    """The comparison is not vacuous: the model takes noise, and the serial members differ from one another."""
    assert LoadedModel(setup["ckpt"]).model_config.n_noise > 0
    with xr.open_zarr(setup["refs"][False], consolidated=False) as ref:
        spread = float(ref["z500"].std("realization").max())
        assert spread > 1e-3 * float(np.abs(ref["z500"]).max()), spread
        assert ref.sizes == {"time": 2, "prediction_timedelta": 2, "realization": MEMBERS, "lat": 33, "lon": 64}


def test_cli_infer_on_2x2_tiles_equals_serial(setup, distributed):
    _assert_same_store(distributed / "hw.zarr", setup["refs"][False])


def test_ensemble_and_batch_ranks_equal_serial_with_antithetic_noise(setup, distributed):
    assert json.loads((distributed / "four.json").read_text()) == {"batch": 2, "ensemble": 2, "h": 1, "w": 1}
    _assert_same_store(distributed / "eb.zarr", setup["refs"][True])


def test_ensemble_parallel_equals_serial(setup, distributed):
    _assert_same_store(distributed / "ens.zarr", setup["refs"][False])
    for writer in (0, 1):
        rep = json.loads((distributed / f"two.json.{writer}").read_text())
        assert rep["layout"] == {"batch": 1, "ensemble": 2, "h": 1, "w": 1}
        assert len(rep["errors"]) == 1 and "--members" in rep["errors"][0]


def test_only_rank_0_writes(distributed):
    """No per-rank leftovers: the stores written (atomically, by rank 0), the reports, nothing else."""
    names = sorted(p.name for p in distributed.iterdir())
    assert names == ["eb.zarr", "ens.zarr", "four.json", "hw.zarr", "two.json.0", "two.json.1"]


def test_device_must_match_the_backend():
    """Every rank computes on its context's device; a --device of another kind is refused alike on all ranks."""
    from types import SimpleNamespace

    import torch

    from sciml.forecasting.distributed.context import check_device

    gloo = SimpleNamespace(backend="gloo", device=torch.device("cpu"), world_size=2)
    nccl = SimpleNamespace(backend="nccl", device=torch.device("cuda", 1), world_size=2)
    for spec, ctx in (("auto", gloo), ("cpu", gloo), ("auto", nccl), ("cuda", nccl)):
        check_device(spec, ctx)
    refused = [
        ("cuda", gloo, "communicates with gloo on cpu; use --device cpu or auto"),
        ("cpu", nccl, "communicates with nccl on cuda; use --device cuda"),
        ("cuda:1", nccl, "each rank uses cuda:LOCAL_RANK"),
    ]
    for spec, ctx, msg in refused:
        with pytest.raises(UsageError, match=msg):
            check_device(spec, ctx)


def _two_step_ranks(ckpt: str, out: str) -> None:
    from sciml.forecasting.distributed.context import ParallelConfig

    # each rank's 4 samples in network calls of 3 and 1 (the tiles' collectives run once per call on every rank)
    cfg = InferConfig(Path(ckpt), INITS, LEAD, MEMBERS, Path(out), seed=SEED, max_batch=3)
    _distributed(cfg, ParallelConfig(h=2, timeout_s=60))  # 2 latitude tiles x 2 batch ranks (one init each)


def test_two_step_model_on_tiles_and_batch_ranks_equals_serial(setup, tmp_path):
    """A two-step model (input_steps 2) on 2 latitude x 2 batch ranks: each rank reads the previous state of its
    initial time on its tile (the serial test in test_infer_score_plots checks that the previous state is used),
    in two network calls per step; the store equals the serial one (one call per step)."""
    from sciml.forecasting.train import Trainer, load_train_config

    store = Path(LoadedModel(setup["ckpt"]).facts.store)
    over = {"data.store": str(store), "data.valid_start": None, "stages.0.steps": 1, "stages.1.steps": 1}
    Trainer(load_train_config("tiny", {**over, "model.overrides.input_steps": 2}), tmp_path / "run").run()
    ckpt = tmp_path / "run" / "checkpoint.pt"
    ref = tmp_path / "serial.zarr"
    run_inference(InferConfig(ckpt, INITS, LEAD, MEMBERS, ref, seed=SEED))
    run = run_local(_two_step_ranks, 4, args=(str(ckpt), str(tmp_path / "dist.zarr")), timeout_s=120)
    assert run.ok, f"4-rank two-step inference failed: {run}"
    _assert_same_store(tmp_path / "dist.zarr", ref)


COLLECTIVE_TIMEOUT_S = 60.0  # what a rank left waiting on a collective would take to fail
# the writer fails on its second lead (12 h): the last lead of a 12 h run, a middle one of an 18 h run; written
# inline or on the writer thread (which reports a lead's error at the next append, or at the end for the last lead)
FAILING_RUNS = [(lead, overlap) for lead in ("12h", "18h") for overlap in (False, True)]


class _DiskFullOnSecondLead(ZarrForecastWriter):
    """The real writer, except that its second ``append`` fails as a full disk would."""

    def append(self, lead, fields) -> None:
        if self.n == 1:
            raise OSError("disk full")
        super().append(lead, fields)


def _failing_writer_ranks(ckpt: str, root: str) -> None:
    from sciml.forecasting.cli.parallel import parallel_context
    from sciml.forecasting.distributed.context import ParallelConfig
    from sciml.forecasting.distributed.infer import DistributedInferHooks

    with parallel_context(ParallelConfig(ensemble=2, timeout_s=COLLECTIVE_TIMEOUT_S)) as ctx:
        for lead, overlap in FAILING_RUNS:
            out = Path(root) / f"{lead}-{int(overlap)}.zarr"
            cfg = InferConfig(Path(ckpt), INITS, lead, MEMBERS, out, seed=SEED, overlap_writes=overlap)
            try:
                run_inference(cfg, writer_cls=_DiskFullOnSecondLead, hooks=DistributedInferHooks(ctx))
                outcome = "finished"
            except Exception as e:  # noqa: BLE001 - the report is what the test checks
                outcome = f"{type(e).__name__}: {e}"
            (Path(root) / f"{lead}-{int(overlap)}.rank{ctx.rank}").write_text(outcome)


def test_a_write_failure_stops_every_rank_with_the_error(setup, tmp_path):
    """Rank 0 (the writer) fails writing lead 12 h: it raises its own OSError and the ensemble rank raises naming
    that lead, both well before a collective timeout, in every run of ``FAILING_RUNS``; each atomic store is
    removed, so nothing is left at ``--out``."""
    assert LoadedModel(setup["ckpt"]).step == pd.Timedelta("6h")  # so the second lead is 12 h
    run = run_local(_failing_writer_ranks, 2, args=(str(setup["ckpt"]), str(tmp_path)), timeout_s=COLLECTIVE_TIMEOUT_S)
    assert run.ok and run.seconds < COLLECTIVE_TIMEOUT_S / 4, run
    reports = sorted(f"{lead}-{int(overlap)}.rank{r}" for lead, overlap in FAILING_RUNS for r in (0, 1))
    assert sorted(p.name for p in tmp_path.iterdir()) == reports  # no store, finished or not
    for lead, overlap in FAILING_RUNS:
        got = [(tmp_path / f"{lead}-{int(overlap)}.rank{r}").read_text() for r in (0, 1)]
        failed = "SciMLError: the writing rank failed at lead 0 days 12:00:00 (its log has the reason)"
        assert got == ["OSError: disk full", failed], (lead, overlap)
