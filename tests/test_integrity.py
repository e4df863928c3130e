"""Nothing lost, nothing silent: store time encoding, run locks, stale temporaries, resume rules, checkpoint
integrity, non-finite data and one-line errors (real processes where the behaviour is about processes)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from sciml.forecasting.data.testing import synthetic_truth

from sciml.cli import main

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
    argv = [*SOLVE, "--sweep", "l=0:2", "--out", str(out)]
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
    assert summary["complete"] and [r["l"] for r in summary["rows"]] == [0, 1, 2]
    assert not [p for p in out.iterdir() if p.name.startswith(".") and not p.name.endswith(".lock")]
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
