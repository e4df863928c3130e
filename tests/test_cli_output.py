"""What a user sees: only sciml's own output by default (no third-party banners or deprecation noise)."""

import logging
import os
import subprocess
import sys

from sciml.progress import LogProgress


def test_solve_prints_only_sciml_output(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "sciml.cli", "solve", "legendre", "--param", "l=1", "--out", str(tmp_path / "r")]
    cmd += ["--steps", "10", "--lm-steps", "10"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout + proc.stderr
    assert "Using backend" not in out and "paddle" not in out  # deepxde's import banner
    assert "Warning" not in out  # e.g. torch's jit.script FutureWarning from the Jacobians
    assert "eta" not in proc.stderr  # an early-stopping solve has no meaningful ETA
    assert "legendre(l=1)" in proc.stdout and "rel. L2" in proc.stdout


def test_verbose_solve_logs_the_banner_at_debug(tmp_path):
    cmd = [sys.executable, "-m", "sciml.cli", "-v", "solve", "legendre", "--param", "l=1"]
    cmd += ["--out", str(tmp_path / "r"), "--steps", "5", "--lm-steps", "5"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "DEBUG sciml.pinn._dde: deepxde: Using backend: pytorch" in proc.stderr


def test_log_progress_without_eta_shows_elapsed(caplog):
    caplog.set_level(logging.INFO, logger="sciml.progress")
    prog = LogProgress(log_every=0.0, eta=False)
    prog.start(500, "solve")
    prog.update(10, {"loss": 1e-3})
    prog.close()
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("solve: 10/500 (2%) loss=1.000e-03 ") and lines[0].endswith(" s")
    assert all("eta" not in line for line in lines)
