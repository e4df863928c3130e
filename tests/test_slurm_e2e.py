"""End to end on a real single-node SLURM cluster: the rendered train template, 4 ranks, sbatch --wait.

The cluster is started through ``scripts/ci/slurm-up.sh`` (idempotent; ~0.1 s when it is already up). Where it
cannot be started (not root, not Linux, SLURM not installed and installing not allowed) every test here is
skipped with the reason in pytest's summary and on stderr; ``SCIML_REQUIRE_SLURM=1`` turns that into a failure
(for CI machines that must run it). Installing the packages with apt-get is allowed when ``SCIML_SLURM_INSTALL=1``
or ``CI`` is set, so a developer's ``pytest`` never installs system packages unasked. If this module started the
daemons, it stops them again (``scripts/ci/slurm-down.sh``).

The job payload is ``scripts/slurm/smoke.py`` behind the same template a training job uses: it takes the
training command's interface (``--config --out --resume``), joins torch.distributed (gloo) from the SLURM
variables the template exports, logs each rank's mesh coordinates, checks an all-reduce against its closed form
and checkpoints on SIGUSR1.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from sciml.cli import main

ROOT = Path(__file__).resolve().parents[1]
SLURM_UP = ROOT / "scripts" / "ci" / "slurm-up.sh"
SLURM_DOWN = ROOT / "scripts" / "ci" / "slurm-down.sh"
SMOKE = ROOT / "scripts" / "slurm" / "smoke.py"
LOG = logging.getLogger(__name__)

pytestmark = [pytest.mark.distributed, pytest.mark.timeout(300)]

RANK_LINE = re.compile(
    r"rank (\d+)/(\d+) local (\d+) host (\S+) backend (\w+) master (\S+):(\d+) "
    r"mesh coords batch=(\d+) ensemble=(\d+) h=(\d+) w=(\d+)"
)


def _cluster_answers() -> bool:
    if shutil.which("scontrol") is None:
        return False
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=30)
    return ping.returncode == 0 and "is UP" in ping.stdout


def say(config: pytest.Config | None, text: str) -> None:
    """A line in the test run's own output (CI log), whatever the capture mode."""
    LOG.warning(text)
    if config is None:
        return
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None:
        return
    with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
        reporter.write_line("")
        reporter.write_line(text)


def _unavailable(reason: str, config: pytest.Config | None = None) -> None:
    message = f"SLURM end-to-end tests not run: {reason}"
    say(config, message)
    if os.environ.get("SCIML_REQUIRE_SLURM") == "1":
        pytest.fail(message)
    pytest.skip(message)


def start_cluster(script: Path = SLURM_UP, environ: dict[str, str] | None = None) -> str | None:
    """Run slurm-up.sh; None when the cluster is up, else why it is not (one line, with the fix)."""
    environ = dict(os.environ if environ is None else environ)
    if not sys.platform.startswith("linux") or shutil.which("bash") is None:
        return "needs Linux with bash"
    if not (environ.get("SCIML_SLURM_INSTALL") == "1" or environ.get("CI")):
        environ["CI_SLURM_NO_INSTALL"] = "1"  # a developer's pytest never installs system packages unasked
    try:
        up = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=600, env=environ)
    except subprocess.TimeoutExpired:
        return f"{script.name} did not finish within 600 s"
    if up.returncode == 0:
        return None
    last = [line for line in up.stderr.splitlines() if line.strip()][-1:] or ["(no output)"]
    hint = ""
    if up.returncode == 3 and environ.get("CI_SLURM_NO_INSTALL") == "1":
        hint = " (as root, set SCIML_SLURM_INSTALL=1 or run `bash scripts/ci/slurm-up.sh` first)"
    return f"{script.name} exited {up.returncode}: {last[0]}{hint}"


@pytest.fixture(scope="module")
def cluster(pytestconfig):
    """A running one-node cluster (started through slurm-up.sh), stopped again if this module started it."""
    was_up = _cluster_answers()
    t0 = time.monotonic()
    reason = start_cluster()
    if reason is not None:
        _unavailable(reason, pytestconfig)
    say(pytestconfig, f"SLURM cluster up in {time.monotonic() - t0:.1f} s (already running: {was_up})")
    yield
    # jobs of this module that a failed or timed-out test left behind
    queue = subprocess.run(["squeue", "-h", "-o", "%i %j"], capture_output=True, text=True, timeout=30).stdout
    rows = [line.split(maxsplit=1) for line in queue.splitlines()]
    ours = [row[0] for row in rows if len(row) == 2 and row[1].startswith(_job_name(""))]
    if ours:
        subprocess.run(["scancel", *ours], capture_output=True, timeout=30)
    if not was_up:
        subprocess.run(["bash", str(SLURM_DOWN)], capture_output=True, text=True, timeout=120)


def test_unavailable_slurm_is_a_logged_skip_or_a_required_failure(tmp_path, monkeypatch, capsys):
    """Without SLURM the module skips with slurm-up's own reason; SCIML_REQUIRE_SLURM=1 makes that a failure."""
    fake = tmp_path / "slurm-up.sh"
    fake.write_text("echo '[slurm-up] installing' >&2; echo '[slurm-up] ERROR: not root' >&2; exit 3\n")
    reason = start_cluster(fake, {"PATH": os.environ["PATH"]})
    assert reason == (
        "slurm-up.sh exited 3: [slurm-up] ERROR: not root "
        "(as root, set SCIML_SLURM_INSTALL=1 or run `bash scripts/ci/slurm-up.sh` first)"
    )
    assert (
        start_cluster(fake, {"PATH": os.environ["PATH"], "CI": "1"})
        == "slurm-up.sh exited 3: [slurm-up] ERROR: not root"
    )
    monkeypatch.delenv("SCIML_REQUIRE_SLURM", raising=False)
    with pytest.raises(pytest.skip.Exception, match="not run: why"):
        _unavailable("why")
    monkeypatch.setenv("SCIML_REQUIRE_SLURM", "1")
    with pytest.raises(pytest.fail.Exception, match="not run: why"):
        _unavailable("why")
    fine = tmp_path / "ok.sh"
    fine.write_text("exit 0\n")
    assert start_cluster(fine, {"PATH": os.environ["PATH"]}) is None


@pytest.fixture
def config(tmp_path: Path) -> Path:
    p = tmp_path / "tiny.yaml"
    p.write_text("smoke: true\n")
    return p


def _job_name(tag: str) -> str:
    return f"sciml-e2e-{os.getpid()}-{tag}"


def launch(
    run_root: Path,
    config: Path,
    tag: str,
    payload_args: list[str],
    *launch_args: str,
    wait: bool = True,
    tasks: int = 4,
    command: str | None = f"{sys.executable} {SMOKE}",
) -> tuple[int, int]:
    """``sciml forecast launch --slurm --submit [--wait]`` on one node; returns (exit code, job id).

    ``command=None`` runs the template's default payload, ``sciml forecast train``.
    In-process (the CLI a user types, minus ~3-8 s of interpreter start and entry-point imports per job).
    """
    argv = [
        "forecast", "launch", "--slurm", "--nodes", "1", "--tasks-per-node", str(tasks), "--time", "5",
        "--signal-seconds", "60", "--job-name", _job_name(tag), "--config", str(config), "--run-root", str(run_root),
        *(["--command", command] if command else []), *launch_args, "--submit", *(["--wait"] if wait else []),
        "--", *payload_args,
    ]  # fmt: skip
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    m = re.match(r"(\d+)\n", out.getvalue())
    assert m, f"no job id printed: rc={rc}\n{out.getvalue()}\n{err.getvalue()}"
    return rc, int(m.group(1))


def job_log(run_root: Path, tag: str, job_id: int) -> str:
    path = run_root / f"{_job_name(tag)}-{job_id}.out"
    return path.read_text() if path.exists() else f"(no log at {path})"


def rank_records(job_dir: Path, restart: int) -> dict[int, dict]:
    recs = [json.loads(p.read_text()) for p in sorted((job_dir / "ranks").glob(f"rank-*.run-{restart}.json"))]
    return {r["rank"]: r for r in recs}


def check_rank_lines(log: str, job_id: int, world: int = 4) -> None:
    """Every rank logged its rank, the rendezvous and its (batch, ensemble, h, w) coordinates in a 1x1x2x2 mesh."""
    lines = RANK_LINE.findall(log)
    assert sorted(int(x[0]) for x in lines) == list(range(world)), log
    host = socket.gethostname().split(".")[0]
    for rank, size, local, rhost, backend, maddr, mport, b, e, h, w in lines:
        r = int(rank)
        assert (int(size), int(local), rhost, backend) == (world, r, host, "gloo"), log
        # master = first host of SLURM_JOB_NODELIST, port = 20000 + job id mod 10000 (the template's rule)
        assert (maddr, int(mport)) == (host, 20000 + job_id % 10000), log
        assert (int(b), int(e), int(h), int(w)) == (0, 0, r // 2, r % 2), log


def test_a_failing_rank_fails_the_job(cluster, tmp_path, config):
    runs = tmp_path / "runs"
    t0 = time.monotonic()
    rc, job = launch(runs, config, "fail", ["--steps", "3", "--fail-rank", "1", "--timeout", "60"], tasks=2)
    log = job_log(runs, "fail", job)
    assert rc != 0, log
    assert "rank 1 fails on purpose" in log
    # the other ranks were killed (srun --kill-on-bad-exit) instead of waiting out the collective timeout
    assert time.monotonic() - t0 < 55, f"took {time.monotonic() - t0:.0f} s\n{log}"


def _our_job(tag: str) -> int | None:
    """Id of this module's job ``tag`` while SLURM knows it."""
    out = subprocess.run(["squeue", "-h", "-n", _job_name(tag), "-o", "%i"], capture_output=True, text=True).stdout
    return int(out.split()[0]) if out.split() else None


def _job_state(job: int) -> tuple[str, int]:
    out = subprocess.run(["scontrol", "show", "job", str(job)], capture_output=True, text=True, timeout=30).stdout
    state = re.search(r"JobState=(\w+)", out)
    restarts = re.search(r"Restarts=(\d+)", out)
    return (state.group(1) if state else "GONE"), (int(restarts.group(1)) if restarts else -1)


def _wait_for(predicate, timeout: float, what: str, log) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{log()}")
        time.sleep(0.2)


def test_four_rank_job_checkpoints_on_usr1_requeues_and_resumes(cluster, tmp_path, config, pytestconfig):
    """4 ranks (2x2 mesh) under `sbatch --wait`; SIGUSR1 as before the time limit -> checkpoint -> requeue ->
    resume -> success. Every rank of both runs logs its rank, rendezvous and mesh coordinates."""
    runs = tmp_path / "runs"
    steps = 120  # 0.05 s each: the signal (sent at step >= 20) always lands mid-run
    args = ["--h-parallel", "2", "--w-parallel", "2", "--steps", str(steps), "--step-seconds", "0.05"]
    result: dict = {}
    # sbatch --wait blocks until the job has finished for good (through the requeue), so it runs in a thread
    waiter = threading.Thread(target=lambda: result.update(out=launch(runs, config, "rq", args)), daemon=True)
    t0 = time.monotonic()
    waiter.start()
    log = lambda: job_log(runs, "rq", job)  # noqa: E731
    try:
        _wait_for(lambda: _our_job("rq") is not None, 60, "the job to be submitted", lambda: "")
        job = _our_job("rq")
        job_dir = runs / f"{_job_name('rq')}-{job}"
        _wait_for(lambda: "step 20/" in log(), 120, "the job to reach step 20", log)
        # what --signal=B:USR1@60 does 60 s before the time limit: SIGUSR1 to the batch shell only
        subprocess.run(["scancel", "--batch", "--signal=USR1", str(job)], check=True, timeout=30)
        _wait_for(lambda: _job_state(job) == ("PENDING", 1), 60, "the job to be requeued", log)
        # SLURM holds a requeued job back ~2 minutes; release it now. Not in the same second as the requeue:
        # a start within it fails with "Job credential revoked".
        time.sleep(2.0)
        subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=True, timeout=30)
        waiter.join(timeout=180)
        assert not waiter.is_alive(), f"sbatch --wait did not return\n{log()}"
    finally:
        if (j := _our_job("rq")) is not None:
            subprocess.run(["scancel", str(j)], capture_output=True, timeout=30)
    rc, job_id = result["out"]
    text = log()
    ranks = "\n".join(f"  {m.group(0)}" for m in RANK_LINE.finditer(text))
    say(pytestconfig, f"SLURM job {job}: 4 ranks, requeued once, sbatch --wait {time.monotonic() - t0:.1f} s\n{ranks}")
    assert (rc, job_id) == (0, job), text
    run0, run1 = text.split("restart 1: ", 1)
    check_rank_lines(run0, job)
    check_rank_lines(run1, job)
    first, second = rank_records(job_dir, 0), rank_records(job_dir, 1)
    assert sorted(first) == sorted(second) == [0, 1, 2, 3], text
    stop = first[0]["end_step"]
    assert 20 <= stop < steps, text
    for r in range(4):
        # mesh groups of a 1x1x2x2 mesh (spatial innermost, row-major): h varies the row index, w the column
        i, j = r // 2, r % 2
        groups = {"h": [j, 2 + j], "w": [2 * i, 2 * i + 1], "spatial": [0, 1, 2, 3], "ensemble": [r], "batch": [r],
                  "data": [r]}  # fmt: skip
        assert first[r]["groups"] == second[r]["groups"] == groups, (first[r], second[r])
        assert first[r]["config"] == str(config) and first[r]["resumed_from"] is None
        # all ranks stopped at the same step on the signal; the requeued run resumed there and finished
        assert first[r]["stopped_by_signal"] and first[r]["end_step"] == stop, first[r]
        assert second[r]["start_step"] == stop and second[r]["end_step"] == steps, second[r]
        assert second[r]["resumed_from"] == str(job_dir / "checkpoint.pt") and second[r]["restart"] == 1
        # every step all-reduced sum_r (r + 1) = 10 (checked by the program); the total carries over the resume
        assert second[r]["acc"] == 10.0 * steps
    assert "requeueing job" in text and "resuming from" in text
    assert text.count("srun exited with 0") == 2, text


# ------------------------------------------------------------------------------------------------ training
@pytest.fixture(scope="module")
def tiny_train_config(tmp_path_factory) -> Path:
    """The built-in ``tiny`` training config on a 3-day, one-trajectory shallow-water store (built in ~3 s)."""
    import dataclasses
    from importlib import resources

    import yaml

    from sciml.forecasting.data import PRESETS, compute_stats, simulate, source_from_dataset, stats_path, write_store
    from sciml.forecasting.slurm import BUILTIN_CONFIGS

    folder = tmp_path_factory.mktemp("train")
    store = folder / "tiny.zarr"
    ds, _ = simulate(dataclasses.replace(PRESETS["tiny"], days=3, trajectories=1, spinup_days=0.5))
    src = source_from_dataset(ds, path=store)
    write_store(src, store)
    compute_stats(src).save(stats_path(store))
    cfg = yaml.safe_load(resources.files(BUILTIN_CONFIGS).joinpath("tiny.yaml").read_text())
    cfg["data"].update(store=str(store), train_end="2001-01-02T18:00", valid_start="2001-01-03T00:00")
    cfg["validation"]["every"] = 1000  # no validation inside the few steps run here
    path = folder / "tiny-e2e.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def serial_weights(config: Path, out: Path, steps: int) -> dict:
    """Model weights after ``steps`` steps of an uninterrupted single-process run in this process."""
    from sciml.forecasting.train import Trainer, load_checkpoint, load_train_config

    trainer = Trainer(load_train_config(config), out)
    assert trainer.run(steps) == "done"
    return load_checkpoint(out / "checkpoint.pt")["model"]


def max_weight_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) if a[k].numel() else 0.0 for k in a)


def test_training_job_on_2x2_tiles_equals_serial_run_and_a_second_job_resumes_it(
    cluster, tmp_path, tiny_train_config, pytestconfig
):
    """`sciml forecast train --h-parallel 2 --w-parallel 2` on 4 SLURM tasks through the template: its checkpoint
    equals a serial run of the same steps, and a second job (2 tasks, 1x2 tiles) started from that checkpoint with
    --resume-from ends with the weights of an uninterrupted serial run of all its steps. Then infer.sbatch
    forecasts from it, identically to inference in this process.

    Tolerance 1e-5 (float32 weights, |w| ~ 1): the tiled run sums the same terms in another order (measured
    ~2e-6 after 3 and 6 Adam steps); a wrong tile, halo or gradient reduction changes weights by >= 1e-4.
    """
    from sciml.forecasting.train import load_checkpoint

    runs = tmp_path / "runs"
    split = ["--h-parallel", "2", "--w-parallel", "2"]
    rc, job = launch(runs, tiny_train_config, "train", [*split, "--max-steps", "3"], command=None)
    log = job_log(runs, "train", job)
    assert rc == 0, log
    assert "parallel mesh batch=1 ensemble=1 h=2 w=2 on gloo" in log and "done: step 3/" in log, log
    ckpt = runs / f"{_job_name('train')}-{job}" / "checkpoint.pt"
    first = load_checkpoint(ckpt)
    d3 = max_weight_diff(first["model"], serial_weights(tiny_train_config, tmp_path / "serial3", 3))
    say(pytestconfig, f"SLURM job {job}: sciml forecast train 2x2 tiles, 3 steps, max |w_slurm - w_serial| = {d3:.3g}")
    assert d3 <= 1e-5

    # the second job resumes on another layout (2 ranks, 1x2 tiles): checkpoints are layout-free, and two ranks
    # cost half the start-up of four on the 2-core CI machine
    rc2, job2 = launch(runs, tiny_train_config, "train2", ["--w-parallel", "2", "--max-steps", "6"], "--resume-from",
                       str(ckpt), tasks=2, command=None)  # fmt: skip
    log2 = job_log(runs, "train2", job2)
    assert rc2 == 0, log2
    assert f"resuming from {ckpt}" in log2 and "done: step 6/" in log2, log2
    assert "parallel mesh batch=1 ensemble=1 h=1 w=2 on gloo" in log2, log2
    second = load_checkpoint(runs / f"{_job_name('train2')}-{job2}" / "checkpoint.pt")
    d6 = max_weight_diff(second["model"], serial_weights(tiny_train_config, tmp_path / "serial6", 6))
    say(pytestconfig, f"SLURM job {job2}: 1x2 tiles, resumed 3 -> 6 steps, max |w_slurm - w_serial| = {d6:.3g}")
    assert d6 <= 1e-5
    assert max_weight_diff(second["model"], first["model"]) > 1e-4  # the resumed job really trained on

    # infer.sbatch: one rank forecasts from that checkpoint; the store equals the same inference run here
    import numpy as np
    import xarray as xr

    from sciml.forecasting.infer import InferConfig, run_inference

    ckpt2 = runs / f"{_job_name('train2')}-{job2}" / "checkpoint.pt"
    infer_args = ["--init", "2001-01-02T00", "--lead", "12h", "--members", "2"]
    rc3, job3 = launch(runs, tiny_train_config, "infer", infer_args, "--job", "infer", "--checkpoint", str(ckpt2),
                       tasks=1, command=None)  # fmt: skip
    log3 = job_log(runs, "infer", job3)
    assert rc3 == 0, log3
    serial = tmp_path / "serial.zarr"
    run_inference(InferConfig(checkpoint=ckpt2, inits=("2001-01-02T00",), lead="12h", members=2, out=serial))
    with (
        xr.open_zarr(runs / f"{_job_name('infer')}-{job3}" / "forecast.zarr", consolidated=False) as fc,
        xr.open_zarr(serial, consolidated=False) as ref,
    ):
        assert dict(fc.sizes) == dict(ref.sizes) and fc.sizes["realization"] == 2, (fc.sizes, ref.sizes)
        for name in ref.data_vars:
            a, b = fc[name].values, ref[name].values
            assert np.isfinite(a).all() and np.array_equal(a, b), name  # same code, same seeds, one thread
    say(pytestconfig, f"SLURM job {job3}: infer.sbatch, 2 members x 2 steps, identical to in-process inference")
