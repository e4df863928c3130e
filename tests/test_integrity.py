"""Nothing lost, nothing silent: store time encoding, run locks, stale temporaries, resume rules, checkpoint
integrity, non-finite data and one-line errors (real processes where the behaviour is about processes)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from sciml.cli import main
from sciml.forecasting.data.testing import synthetic_truth

PY = sys.executable


def _sciml(*args: str, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", "sciml.cli", *args], capture_output=True, text=True, timeout=timeout, **kw)


def _one_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    return lines[0]


# ------------------------------------------------------------------------------------------- A: store times
def test_store_in_one_step_blocks_round_trips_times_and_values(tmp_path, monkeypatch):
    """A block threshold below one step (as for 0.25 deg x 16 channels) must not re-interpret appended times."""
    from sciml.forecasting.data import store
    from sciml.forecasting.data.readers import open_source

    truth = synthetic_truth(steps=6)
    monkeypatch.setattr(store, "BLOCK_BYTES", 1.0)  # one time step per block
    path = store.write_store(store.source_from_dataset(truth), tmp_path / "s.zarr")
    with open_source(path) as src:
        assert src.times.equals(pd.DatetimeIndex(truth["time"].values))
        for c in truth.data_vars:
            got = (src.parts[0] if c in src.channels else src.static)[c].values
            np.testing.assert_array_equal(got, truth[c].values)
    raw = xr.open_zarr(path, consolidated=False, decode_times=False)["time"]
    assert raw.attrs["units"].startswith("seconds since 1970") and raw.dtype == np.int64
    assert main(["data", "check", str(path)]) == 0


def test_check_refuses_a_store_with_misencoded_times(tmp_path, capsys):
    """A store written the old way (first block 'days since', appended 6-hourly offsets) is reported as corrupt."""
    from sciml.forecasting.data.store import source_from_dataset, write_store

    truth = synthetic_truth(steps=4)
    good = write_store(source_from_dataset(truth), tmp_path / "good.zarr")
    bad = tmp_path / "bad.zarr"
    first = truth.isel(time=slice(0, 1))
    first.attrs.update(xr.open_zarr(good, consolidated=False).attrs)
    first.to_zarr(bad, mode="w", zarr_format=3, consolidated=False)  # xarray picks 'days since' from one time
    for i in range(1, 4):
        block = truth.isel(time=slice(i, i + 1)).drop_vars(["orog", "lsm"])
        block.attrs = first.attrs
        with pytest.warns(UserWarning, match="hours since"):  # the old silent unit switch
            block.to_zarr(bad, append_dim="time", zarr_format=3, consolidated=False)
    capsys.readouterr()
    assert main(["data", "check", str(bad)]) == 2
    assert "the store is corrupt" in _one_line(capsys.readouterr().err)


# ------------------------------------------------------------------------------------------- B: one writer
HOLD = """
import sys, time
from sciml.runlock import run_lock
with run_lock(sys.argv[1], "holder"):
    print("locked", flush=True)
    time.sleep(60)
"""


@pytest.fixture
def held(tmp_path):
    """A run folder whose lock another (real) process holds."""
    out = tmp_path / "run"
    proc = subprocess.Popen([PY, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    yield out
    proc.kill()
    proc.wait()


@pytest.mark.parametrize(
    "argv",
    [
        ["solve", "legendre", "--steps", "0", "--lm-steps", "1"],
        ["forecast", "train", "--config", "tiny", "--set", "data.store=nowhere.zarr"],
        ["forecast", "infer", "--checkpoint", "nowhere.pt", "--init", "2001-01-01", "--lead", "6h"],
    ],
    ids=["solve", "train", "infer"],
)
def test_second_writer_of_a_run_gets_one_line_and_exit_2(held, argv, capsys):
    assert main([*argv, "--out", str(held)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert f"{held} is in use by pid" in line and "holder" in line


def test_lock_of_a_killed_holder_is_free_and_a_released_lock_leaves_no_file(tmp_path):
    from sciml.runlock import lock_path, run_lock

    out = tmp_path / "run"
    proc = subprocess.Popen([PY, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    proc.kill()  # SIGKILL: no cleanup ran, the file stays, the kernel dropped the lock
    proc.wait()
    assert lock_path(out).exists()
    with run_lock(out, "test"):
        assert "(test)" in lock_path(out).read_text()
    assert not lock_path(out).exists()


def test_stale_temporaries_of_killed_writers_are_removed_or_restored(tmp_path, caplog):
    from sciml.io import atomic_path, clean_stale_siblings

    dest = tmp_path / "store.zarr"
    with atomic_path(dest, directory=True) as tmp:
        (tmp / "v").write_text("old")
    # kill -9 in the middle of a write, and between the two renames of a replacement
    write = f"""
import os, signal
from sciml import io
with io.atomic_path({str(dest)!r}, directory=True) as tmp:
    (tmp / "v").write_bytes(b"0" * 300000)
    if os.environ["WHEN"] == "between":
        real = os.replace
        def replace_then_die(a, b):
            real(a, b)
            os.kill(os.getpid(), signal.SIGKILL)
        io.os.replace = replace_then_die
    else:
        os.kill(os.getpid(), signal.SIGKILL)
"""
    for when in ("during", "between"):
        proc = subprocess.run([PY, "-c", write], env={**__import__("os").environ, "WHEN": when}, timeout=60)
        assert proc.returncode == -9
    leftovers = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".store.zarr."))
    assert len(leftovers) == 2 and not dest.exists(), leftovers  # a temporary, and the old store moved aside
    with caplog.at_level("WARNING"):
        done = clean_stale_siblings(dest)
    assert (dest / "v").read_text() == "old"  # the complete previous store is back
    assert any(d.startswith("removed") and "(0.3 MB)" in d for d in done), done
    assert any(d.startswith("restored") for d in done) and "removed" in caplog.text
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".store.zarr.")]


SOLVE = ["-q", "solve", "legendre", "--steps", "0", "--lm-steps", "2", "--lbfgs-steps", "0"]


def test_killed_sweep_resumes_and_results_are_complete_ordinary_folders(tmp_path, capsys):
    import json
    import os
    import signal
    import stat
    import time

    out = tmp_path / "sweep"
    argv = [*SOLVE, "--sweep", "l=0:1", "--out", str(out)]
    proc = subprocess.Popen([PY, "-m", "sciml.cli", *argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (out / "l=0" / "metrics.json").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    first = (out / "l=0" / "metrics.json").stat().st_mtime_ns
    assert not (out / "sweep.csv").exists()
    assert main(argv) == 2  # a rerun names the choice
    assert "pass --resume to finish it" in _one_line(capsys.readouterr().err)
    assert main([*argv, "--resume"]) == 0
    assert (out / "l=0" / "metrics.json").stat().st_mtime_ns == first  # kept, not solved again
    summary = json.loads((out / "sweep.json").read_text())
    assert summary["complete"] and [r["l"] for r in summary["rows"]] == [0, 1]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporaries, no lock file
    umask = os.umask(0)
    os.umask(umask)
    member = out / "l=1"
    assert stat.S_IMODE(member.stat().st_mode) == 0o777 & ~umask  # not mkdtemp's private 0700
    run = json.loads((member / "run.json").read_text())
    metrics = json.loads((member / "metrics.json").read_text())
    assert run["command"] == "sciml solve" and run["wall_time_s"] >= metrics["wall_time_s"] > 0
    # a single result is not replaced without --overwrite
    single = [*SOLVE, "--out", str(member)]
    capsys.readouterr()
    assert main(single) == 2 and "--overwrite" in _one_line(capsys.readouterr().err)
    assert main([*single, "--overwrite"]) == 0


# ------------------------------------------------------------------------------------------- training fixtures
@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """A 3-day, one-trajectory shallow-water store with statistics (~3 s)."""
    import dataclasses

    from sciml.forecasting.data import PRESETS, compute_stats, simulate, source_from_dataset, stats_path, write_store

    path = tmp_path_factory.mktemp("data") / "tiny.zarr"
    ds, _ = simulate(dataclasses.replace(PRESETS["tiny"], days=3, trajectories=1, spinup_days=0.5))
    src = source_from_dataset(ds, path=path)
    write_store(src, path)
    compute_stats(src).save(stats_path(path))
    return path


def _train(store: Path, out: Path, *extra: str) -> list[str]:
    sets = {
        "data.store": store,
        "data.train_end": "2001-01-02T18:00",
        "data.valid_start": "2001-01-03T00:00",
        "validation.every": 1000,
        "checkpoint_every": 1000,
        "stages.0.steps": 4,
        "stages.1.steps": 1,
    }
    args = ["-q", "forecast", "train", "--config", "tiny", "--out", str(out)]
    for k, v in sets.items():
        args += ["--set", f"{k}={v}"]
    return [*args, *extra]


def _error(err: str) -> str:
    """The one error line of a failed command (warnings may precede it; no traceback)."""
    assert "Traceback" not in err, err
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and err.strip().splitlines()[-1] == lines[0], err
    return lines[0]


@pytest.fixture(scope="module")
def half_run(store, tmp_path_factory) -> Path:
    """A training run stopped (checkpointed) at step 2 of 5, in stage 0."""
    out = tmp_path_factory.mktemp("train") / "run"
    assert main(_train(store, out, "--max-steps", "2")) == 0
    return out


# ------------------------------------------------------------------------------------------- C: resume rules
def test_resume_applies_a_new_lr_from_the_resume_step(store, half_run, tmp_path, capsys):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(half_run, out)
    assert main([*_train(store, out, "--resume"), "--set", "stages.0.lr=0.01", "--max-steps", "4"]) == 0
    rows = pd.read_csv(out / "train.csv")
    assert rows["lr"].tolist() == pytest.approx([3e-3, 3e-3, 1e-2, 1e-2])  # tiny.yaml: constant 3e-3 in stage 0
    assert "stages.0.lr" in capsys.readouterr().err  # the change is announced


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ("seed=5", "seed"),
        ("stages.0.rollout=2", "stages.0.rollout (stage 0 is in progress)"),
        ("stages.0.steps=1", "stages.0.steps (stage 0 has done 2 steps)"),
        ("data.channels=[z500]", "data.channels"),
    ],
)
def test_resume_refuses_changes_that_would_diverge(store, half_run, change, named, capsys):
    before = (half_run / "checkpoint.pt").read_bytes()
    assert main([*_train(store, half_run, "--resume"), "--set", change]) == 2
    line = _error(capsys.readouterr().err)
    assert "differs from the checkpoint" in line and named in line
    assert (half_run / "checkpoint.pt").read_bytes() == before


# ------------------------------------------------------------------------------------------- D: checkpoints
def _tensor_data_offset(path: Path) -> tuple[int, int]:
    """Offset and size of the largest stored record of a torch zip checkpoint (tensor bytes)."""
    import re
    import struct
    import zipfile

    records = [i for i in zipfile.ZipFile(path).infolist() if re.search(r"/data/\d+$", i.filename)]
    info = max(records, key=lambda i: i.file_size)
    with open(path, "rb") as fh:
        fh.seek(info.header_offset + 26)
        name_len, extra_len = struct.unpack("<HH", fh.read(4))
    return info.header_offset + 30 + name_len + extra_len, info.file_size


def _damaged(half_run: Path, tmp_path: Path, how: str) -> Path:
    import shutil

    import torch

    from sciml.forecasting.train import load_checkpoint, save_checkpoint

    out = tmp_path / how
    shutil.copytree(half_run, out)
    ck = out / "checkpoint.pt"
    if how == "flipped":
        data = bytearray(ck.read_bytes())
        start, size = _tensor_data_offset(ck)
        for i in np.random.default_rng(0).choice(size, 64, replace=False):
            data[start + i] ^= 0xFF
        ck.write_bytes(bytes(data))
    elif how == "random":
        ck.write_bytes(np.random.default_rng(17).bytes(5000))  # the unpickler fails with IndexError
    else:
        payload = load_checkpoint(ck)
        payload.pop("sha256")
        payload.pop("format")
        if how == "no-optimizer":
            payload.pop("optimizer")
        elif how == "shape":
            name = next(k for k, v in payload["model"].items() if v.is_floating_point() and v.numel() > 1)
            payload["model"][name] = torch.zeros(payload["model"][name].numel() + 1)
        elif how == "nan":
            name = next(k for k, v in payload["model"].items() if v.is_floating_point())
            payload["model"][name] = payload["model"][name] * float("nan")
        save_checkpoint(ck, payload)
    return out


@pytest.mark.parametrize(
    ("how", "says"),
    [
        ("flipped", "is corrupt: its content does not match the sha256"),
        ("random", "cannot be loaded safely"),
        ("no-optimizer", "lacks ['optimizer']"),
        ("shape", "does not fit this run"),
        ("nan", "holds non-finite weights"),
    ],
)
def test_damaged_checkpoints_are_refused_in_one_line(store, half_run, tmp_path, how, says, capsys):
    out = _damaged(half_run, tmp_path, how)
    assert main(_train(store, out, "--resume")) == 2
    line = _error(capsys.readouterr().err)
    assert says in line and str(out / "checkpoint.pt") in line
    if how in ("flipped", "shape"):
        argv = ["forecast", "infer", "--checkpoint", str(out / "checkpoint.pt"), "--init", "2001-01-03T00"]
        assert main([*argv, "--lead", "6h", "--out", str(tmp_path / "fc.zarr"), "--members", "2"]) == 2
        assert "checkpoint.pt" in _error(capsys.readouterr().err)


def test_resume_on_a_store_replaced_by_another_grid_is_refused(store, tmp_path, capsys):
    import shutil

    from sciml.forecasting.data import compute_stats, source_from_dataset, stats_path, write_store
    from sciml.forecasting.data.grid import Grid

    data, out = tmp_path / "data.zarr", tmp_path / "run"
    shutil.copytree(store, data)
    shutil.copy(stats_path(store), stats_path(data))
    assert main(_train(data, out, "--max-steps", "1")) == 0
    shutil.rmtree(data)  # the same path now holds a store on another grid
    g = Grid("equiangular", 17, 32)
    times = pd.date_range("2001-01-01", periods=12, freq="6h")
    rng = np.random.default_rng(0)
    shape = (12, 17, 32)
    dims = ("time", "lat", "lon")
    fields = {c: (dims, rng.standard_normal(shape, dtype=np.float32)) for c in ("z500", "u500", "v500")}
    src = source_from_dataset(xr.Dataset(fields, coords={"time": times, "lat": g.lat, "lon": g.lon}), path=data)
    write_store(src, data)
    compute_stats(src).save(stats_path(data))
    capsys.readouterr()
    assert main(_train(data, out, "--resume")) == 2
    line = _error(capsys.readouterr().err)
    assert "was trained on data with nlat=33, nlon=64" in line and "nlat=17, nlon=32" in line


def test_disk_full_during_a_checkpoint_keeps_the_previous_one(store, half_run, tmp_path):
    import resource
    import shutil

    from sciml.forecasting.train import load_checkpoint

    out = tmp_path / "run"
    shutil.copytree(half_run, out)
    before = (out / "checkpoint.pt").read_bytes()
    limit = len(before) - 1000  # the next checkpoint cannot be written; the small CSV/JSON files can

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = subprocess.run(
        [PY, "-m", "sciml.cli", *_train(store, out, "--resume")],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=small_files,
    )
    assert proc.returncode == 1, proc.stderr
    line = _error(proc.stderr)
    ck = out / "checkpoint.pt"
    assert "file size limit (ulimit -f) exceeded on" in line and f"previous checkpoint {ck} kept" in line
    assert ck.read_bytes() == before and load_checkpoint(ck)["position"]["step"] == 2
    assert not [p for p in out.iterdir() if p.name.startswith(".checkpoint.pt.")]


def test_disk_full_message_names_the_device(tmp_path, monkeypatch):
    import errno

    import torch

    from sciml.errors import SciMLError
    from sciml.forecasting import checkpoint as ck

    def full(obj, fh):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ck.torch, "save", full)
    payload = {"model": {"w": torch.zeros(2)}, "model_config": {}, "config": {}, "position": {}, "data": {}}
    with pytest.raises(SciMLError, match=r"^no space left on /\S* while writing .*; no checkpoint was written$"):
        ck.save_checkpoint(tmp_path / "checkpoint.pt", payload)


def test_checkpoint_without_hash_still_loads(tmp_path, caplog):
    import torch

    from sciml.forecasting.train import load_checkpoint

    old = {"format": "sciml.forecast.train/1", "model": {}, "model_config": {}, "config": {}}
    old.update(position={}, data={})
    torch.save(old, tmp_path / "old.pt")
    with caplog.at_level("WARNING"):
        assert load_checkpoint(tmp_path / "old.pt")["format"] == old["format"]
    assert "no content hash" in caplog.text


# ------------------------------------------------------------------------------------------- E: non-finite data
def test_inf_in_a_store_is_reported_by_check_and_refused_by_stats(tmp_path, capsys):
    from sciml.forecasting.data.store import source_from_dataset, write_store

    truth = synthetic_truth(steps=6)
    truth["t850"].values[3, 2, 5] = np.inf
    truth["t850"].values[4, 0, 0] = np.nan
    path = write_store(source_from_dataset(truth), tmp_path / "inf.zarr")
    capsys.readouterr()
    assert main(["data", "check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "NaN       1 in total: t850=1" in out and "inf       1 in total: t850=1" in out
    assert "t850    first at 2001-12-31 18:00:00, 2002-01-01 00:00:00" in out
    assert main(["data", "stats", str(path), "--out", str(tmp_path / "s.nc")]) == 2
    assert "NaN/inf values in ['t850']" in _error(capsys.readouterr().err)
    assert not (tmp_path / "s.nc").exists()


def _poison(store: Path, dest: Path, value: float) -> Path:
    """A copy of ``store`` (with its statistics) whose z500 holds ``value`` at one point of every time step."""
    import shutil

    import zarr

    from sciml.forecasting.data import stats_path

    shutil.copytree(store, dest)
    shutil.copy(stats_path(store), stats_path(dest))
    z = zarr.open_group(str(dest), mode="r+")["z500"]
    z[:, 3, 7] = value
    return dest


def test_training_stops_and_inference_refuses_inf_naming_channel_and_time(store, half_run, tmp_path, capsys):
    from sciml.forecasting.data import stats_path

    bad = _poison(store, tmp_path / "inf.zarr", np.inf)
    # samples are not scanned (`sciml data check` does that once): the first step's loss is non-finite and stops
    assert main(_train(bad, tmp_path / "run")) == 1
    line = _error(capsys.readouterr().err)
    assert "non-finite loss" in line and "at step 1 " in line and "`sciml data check`" in line
    argv = ["forecast", "infer", "--checkpoint", str(half_run / "checkpoint.pt"), "--data", str(bad)]
    assert main([*argv, "--init", "2001-01-02T00", "--lead", "6h", "--members", "2", "--out", str(tmp_path / "f")]) == 2
    line = _error(capsys.readouterr().err)
    assert "NaN/inf in the initial conditions: z500 at 2001-01-02 00:00:00 (1 values)" in line
    # statistics computed from such data (inf mean, NaN std) are refused before the first step
    st = xr.load_dataset(stats_path(store))
    st["mean"].values[0] = np.inf
    st.to_netcdf(stats_path(bad))
    assert main(_train(bad, tmp_path / "run2")) == 2
    assert "non-finite statistics of z500 (mean inf" in _error(capsys.readouterr().err)


def test_score_masks_nan_in_the_truth_with_a_count_and_refuses_inf(store, half_run, tmp_path, capsys, caplog):
    fc = tmp_path / "fc.zarr"
    argv = ["forecast", "infer", "--checkpoint", str(half_run / "checkpoint.pt"), "--init", "2001-01-02T00"]
    assert main([*argv, "--lead", "12h", "--members", "2", "--out", str(fc)]) == 0
    nan = _poison(store, tmp_path / "nan.zarr", np.nan)
    with caplog.at_level("WARNING"):
        assert main(["forecast", "score", str(fc), "--truth", str(nan), "--out", str(tmp_path / "s.nc")]) == 0
    assert "2 NaN value(s) of z500 at verification times (first 2001-01-02 06:00:00)" in caplog.text
    inf = _poison(store, tmp_path / "inf.zarr", -np.inf)
    capsys.readouterr()
    assert main(["forecast", "score", str(fc), "--truth", str(inf), "--out", str(tmp_path / "s2.nc")]) == 2
    assert "1 infinite value(s) in z500 at ['2001-01-02 06:00:00']" in _error(capsys.readouterr().err)


def test_a_dynamic_channel_without_time_is_not_taken_as_static(tmp_path, capsys):
    truth = synthetic_truth(steps=4)
    truth["z500"] = truth["z500"].isel(time=0, drop=True)
    truth.attrs.update(sciml_contract="1")
    truth.to_zarr(tmp_path / "flat.zarr", zarr_format=3, consolidated=False)
    assert main(["data", "check", str(tmp_path / "flat.zarr")]) == 2
    assert "variable 'z500' has no time dimension" in _error(capsys.readouterr().err)


# ------------------------------------------------------------------------------------------- F: one-line errors
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    from sciml.forecasting.data.testing import write_cds

    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("stages:\n  - {name: a, steps: 1\n  lr: 2\n")
    run_cfg = tmp_path / "run.yaml"
    run_cfg.write_text("problem: legendre\nparams: {l: 2}\ntypo: 1\n")
    notzip = tmp_path / "notazip.zip"  # layouts are told by bytes: a name is not a format
    notzip.write_text("hello")
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("a.nc", b"x" * 1000)
    truncated = tmp_path / "truncated.zip"  # a zip's bytes, cut short by an interrupted download
    truncated.write_bytes(buf.getvalue()[:60])
    nc = write_cds(synthetic_truth(steps=4), tmp_path / "nc")
    cases = [
        (["solve", "legendre", "--config", str(bad_yaml)], f"{bad_yaml}:3:5: not valid YAML: expected ',' or '}}'"),
        (["forecast", "train", "--config", str(bad_yaml)], f"{bad_yaml}:3:5: not valid YAML"),
        (["data", "check", str(notzip)], f"{notzip}: unknown data layout"),
        (["data", "check", str(truncated)], f"{truncated}: not a valid zip archive"),
        (["data", "check", str(nc), "--layout", "wb2"], f"{nc}: no zarr group there"),
        (["data", "stats", str(nc), "--start", "notadate"], "--start 'notadate': not a date/time"),
        (["forecast", "train", "--config", "tiny", "--set", "stages.5.steps=3"], "stages has 2 entries (0..1)"),
        (["solve", "legendre", "--sweep", "l=8:0"], "need START <= STOP and STEP > 0"),
        (["solve", "legendre", "--sweep", "l=0:1", "--sweep", "l=2:3"], "--sweep is given 2 times"),
        (["solve", "legendre", "--config", str(run_cfg)], "unknown key(s) typo; a run config holds only problem"),
    ]
    for argv, says in cases:
        capsys.readouterr()
        assert main(argv) == 2, argv
        line = _error(capsys.readouterr().err)
        assert says in line, (argv, line)


def test_library_errors_map_to_usage_errors_in_one_place():
    import zipfile

    import yaml

    from sciml.errors import UsageError, explain

    assert "x.zip: not a valid zip archive" in str(explain(zipfile.BadZipFile("File is not a zip file"), "x.zip"))
    try:
        yaml.safe_load("a: [1, 2\nb: 3\n")
    except yaml.YAMLError as exc:
        msg = str(explain(exc, "c.yaml"))
    assert msg.startswith("c.yaml:2:2: not valid YAML") and "\n" not in msg
    assert isinstance(explain(FileNotFoundError(2, "No such file", "a.nc")), UsageError)
    assert explain(IndexError("pop from empty list")) is None  # a bug stays a bug (exit 1)


def test_synth_with_one_trajectory_needs_no_groups_flag(tmp_path, capsys):
    out = tmp_path / "one.zarr"
    argv = ["data", "synth", "--trajectories", "1", "--days", "0.5", "--spinup-days", "0"]  # default preset: 2 groups
    argv += ["--nlat", "33", "--nlon", "64", "--truncation", "16", "--dt", "2400"]
    assert main([*argv, "--out", str(out), "--no-stats", "--workers", "1"]) == 0
    assert "wrote" in capsys.readouterr().out and out.is_dir()
