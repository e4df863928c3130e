"""``sciml forecast launch``: rendering the sbatch templates, validation, and the templates' bash logic.

The bash logic (master address, per-job port, resume on requeue, SIGUSR1 -> checkpoint -> requeue, exit codes)
runs here for real with stand-ins for ``srun`` and ``scontrol`` on PATH, so it is tested on any machine; the
real SLURM cluster test is tests/test_slurm_e2e.py.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sciml.cli import main
from sciml.errors import SciMLError, UsageError
from sciml.forecasting.slurm import (
    TEMPLATE_DIR,
    SlurmLaunch,
    field_values,
    parse_time,
    render,
    render_text,
    template_fields,
)

BASH = shutil.which("bash")


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    p = tmp_path / "cfg dir" / "tiny.yaml"  # a space: must survive quoting
    p.parent.mkdir()
    p.write_text("model: tiny\n")
    return p


def sbatch_options(script: str) -> dict[str, str]:
    """``#SBATCH --key=value`` lines -> {key: value}; bare flags map to ''."""
    out = {}
    for line in script.splitlines():
        m = re.fullmatch(r"#SBATCH --([a-z-]+)(?:=(\S+))?", line.strip())
        if m:
            out[m.group(1)] = m.group(2) or ""
        elif line.startswith("#SBATCH"):
            raise AssertionError(f"malformed #SBATCH line {line!r}")
    return out


# ------------------------------------------------------------------------------------------------ time limits
@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30", 1800),
        ("90", 5400),
        ("30:15", 1815),
        ("12:00:00", 43200),
        ("2-00", 2 * 86400),
        ("2-12:30", 2 * 86400 + 12 * 3600 + 30 * 60),
        ("1-00:00:01", 86401),
    ],
)
def test_parse_time_forms(text, seconds):
    assert parse_time(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "1:2:3:4", "10:60", "1:00:61", "1-24:00", "0", "00:00:00", "-5", "1h"])
def test_parse_time_rejects(text):
    with pytest.raises(UsageError, match="--time"):
        parse_time(text)


# ------------------------------------------------------------------------------------------------ rendering
def test_render_substitutes_every_value(cfg, tmp_path):
    spec = SlurmLaunch(
        nodes=3,
        gpus_per_node=4,
        cpus_per_task=8,
        time="2-12:00",
        signal_s=600,
        partition="gpu,gpu-long",
        account="proj_42",
        job_name="fcn3-run",
        config=cfg,
        run_root=tmp_path / "runs",
        extra_args=("--h-parallel", "2", "--w-parallel", "2", "--note", "it's a test"),
    )
    text = render(spec)
    assert "{{" not in text
    opts = sbatch_options(text)
    assert opts == {
        "job-name": "fcn3-run",
        "nodes": "3",
        "ntasks-per-node": "4",  # one task per GPU
        "cpus-per-task": "8",
        "gpus-per-node": "4",
        "partition": "gpu,gpu-long",
        "account": "proj_42",
        "time": "2-12:00",
        "output": f"{(tmp_path / 'runs').resolve()}/%x-%j.out",
        "open-mode": "append",
        "requeue": "",
        "signal": "B:USR1@600",
    }
    assert spec.world_size == 12
    assert "srun --kill-on-bad-exit=1 --ntasks-per-node=4" in text
    if BASH:
        subprocess.run([BASH, "-n"], input=text, text=True, check=True)  # syntactically valid bash


def test_render_cpu_defaults_leave_optional_lines_as_comments(cfg, tmp_path):
    text = render(SlurmLaunch(config=cfg, run_root=tmp_path))
    opts = sbatch_options(text)
    assert opts["nodes"] == "1" and opts["ntasks-per-node"] == "1" and opts["time"] == "01:00:00"
    assert not {"gpus-per-node", "partition", "account"} & set(opts)
    assert opts["job-name"] == "sciml-train"
    assert f"PAYLOAD=({sys.executable} -m sciml.cli forecast train)" in text


def test_infer_template(tmp_path):
    ckpt = tmp_path / "ck.pt"
    ckpt.write_bytes(b"x")
    text = render(SlurmLaunch(kind="infer", checkpoint=ckpt, gpus_per_node=1, run_root=tmp_path))
    opts = sbatch_options(text)
    assert opts["ntasks-per-node"] == "1" and opts["job-name"] == "sciml-infer" and "signal" not in opts
    assert opts["gpus-per-node"] == "1"
    assert f"CHECKPOINT={ckpt.resolve()}" in text and "forecast infer" in text and "{{" not in text


@pytest.mark.parametrize("kind", ["train", "infer"])
def test_every_template_field_has_a_value(kind, cfg):
    fields = template_fields((TEMPLATE_DIR / f"{kind}.sbatch").read_text())
    assert fields, "no fields found: the field pattern is broken"
    assert fields <= set(field_values(SlurmLaunch(config=cfg)))


def test_render_text_rejects_unknown_and_leftover_fields():
    with pytest.raises(SciMLError, match="without a value: nope"):
        render_text("a {{nope}} b", {"x": "1"})
    with pytest.raises(SciMLError, match="line 2"):
        render_text("ok {{x}}\n{{ broken", {"x": "1"})
    assert render_text("${a:+${b}} {{ x }}", {"x": "1"}) == "${a:+${b}} 1"  # bash's '}}' is fine


def _spec(cfg, **kw):
    return SlurmLaunch(**({"config": cfg} | kw))


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"nodes": 0}, "--nodes must be >= 1"),
        ({"nodes": 1.5}, "--nodes must be an integer"),
        ({"tasks_per_node": 0}, "--tasks-per-node must be >= 1"),
        ({"gpus_per_node": -1}, "--gpus-per-node must be >= 0"),
        ({"gpus_per_node": 4, "tasks_per_node": 2}, "one task .rank. per GPU"),
        ({"cpus_per_task": 0}, "--cpus-per-task must be >= 1"),
        ({"time": "forever"}, "is not a SLURM time limit"),
        ({"time": "10", "signal_s": 600}, "not below the time limit"),
        ({"time": "1", "signal_s": 0}, "up to 60 s early"),  # a 1-minute job could be signalled at its start
        ({"time": "6", "signal_s": 300}, "not below the time limit"),
        ({"signal_s": 70000, "time": "2-00"}, "maximum 65535"),
        ({"signal_s": -1}, "--signal-seconds must be >= 0"),
        ({"partition": "gpu queue"}, "--partition 'gpu queue' is not a SLURM name"),
        ({"account": "a;rm -rf"}, "--account"),
        ({"job_name": "my job"}, "--job-name"),
        ({"run_root": Path("/tmp/my runs")}, "--run-root"),
        ({"run_root": Path("/tmp/%j")}, "--run-root"),
        ({"checkpoint_name": "../escape.pt"}, "relative path inside the job folder"),
        ({"payload": ()}, "--command is empty"),
        ({"extra_args": ("a\nb",)}, "newline"),
        ({"kind": "serve"}, "unknown job kind"),
    ],
)
def test_bad_values_are_usage_errors(cfg, kw, message):
    with pytest.raises(UsageError, match=message):
        _spec(cfg, **kw)


def test_missing_files_are_usage_errors(tmp_path, cfg):
    with pytest.raises(UsageError, match="--config FILE is required"):
        SlurmLaunch()
    with pytest.raises(UsageError, match="is not a file"):
        SlurmLaunch(config=tmp_path / "missing.yaml")
    with pytest.raises(UsageError, match="--resume-from .* is not a file"):
        SlurmLaunch(config=cfg, resume_from=tmp_path / "nope.pt")
    with pytest.raises(UsageError, match="--checkpoint FILE is required"):
        SlurmLaunch(kind="infer")
    with pytest.raises(UsageError, match="--checkpoint is for --job infer"):
        SlurmLaunch(config=cfg, checkpoint=cfg)
    with pytest.raises(UsageError, match="template .* not found"):
        render(SlurmLaunch(config=cfg), tmp_path / "none.sbatch")


# ------------------------------------------------------------------------------------------------ CLI
def test_cli_prints_script(cfg, tmp_path, capsys):
    rc = main(
        ["forecast", "launch", "--slurm", "--nodes", "2", "--tasks-per-node", "3", "--partition", "p1", "--time",
         "30:00", "--config", str(cfg), "--run-root", str(tmp_path), "--", "--h-parallel", "3"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0
    opts = sbatch_options(out)
    assert (opts["nodes"], opts["ntasks-per-node"], opts["partition"], opts["time"]) == ("2", "3", "p1", "30:00")
    assert "EXTRA=(--h-parallel 3)" in out


def test_cli_writes_file_and_custom_command(cfg, tmp_path, capsys):
    dest = tmp_path / "job.sbatch"
    rc = main(
        ["forecast", "launch", "--slurm", "--config", str(cfg), "--run-root", str(tmp_path), "-o", str(dest),
         "--command", "python 'my smoke.py' --x"]
    )  # fmt: skip
    assert rc == 0 and capsys.readouterr().out == ""
    assert "PAYLOAD=(python 'my smoke.py' --x)" in dest.read_text()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--config", "{cfg}"], "needs --slurm"),
        (["--slurm", "--config", "{cfg}", "--wait"], "--wait only makes sense with --submit"),
        (["--slurm", "--config", "{cfg}", "--time", "1:99"], "--time"),
        (["--slurm", "--config", "{cfg}", "--nodes", "0"], "--nodes must be >= 1"),
        (["--slurm", "--config", "{cfg}", "stray"], "after '--'"),
        (["--slurm", "--config", "{cfg}", "--command", "'unclosed"], "--command"),
        (["--slurm"], "--config FILE is required"),
    ],
)
def test_cli_usage_errors_exit_2(cfg, argv, message, capsys):
    rc = main(["forecast", "launch", *[a.replace("{cfg}", str(cfg)) for a in argv]])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert message in err and err.count("\n") == 1  # one clear line


def test_cli_submit_without_sbatch_is_a_runtime_error(cfg, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    rc = main(["forecast", "launch", "--slurm", "--config", str(cfg), "--run-root", str(tmp_path / "r"), "--submit"])
    assert rc == 1 and "'sbatch' not found" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ bash logic
FAKE_SRUN = r"""#!/bin/bash
# stand-in for srun: record argv (one per line), the rendezvous env, then behave as $FAKE_SRUN_MODE says
printf '%s\n' "$@" > "$FAKE_LOG/srun.args"
echo "$MASTER_ADDR $MASTER_PORT $OMP_NUM_THREADS" > "$FAKE_LOG/srun.env"
case "${FAKE_SRUN_MODE:-ok}" in
  ok) exit 0 ;;
  fail) exit 5 ;;
  resume_me) exit 3 ;;
  wait_usr1)
    trap 'touch "$FAKE_LOG/srun.got_usr1"; exit 0' USR1
    touch "$FAKE_LOG/srun.started"
    for i in $(seq 200); do sleep 0.05; done
    exit 9 ;;
esac
"""
FAKE_SCONTROL = r"""#!/bin/bash
# stand-in for scontrol: expand a fixed two-node list, record requeues
case "$1 $2" in
  "show hostnames") printf 'node01\nnode02\n' ;;
  "requeue "*) echo "$2" >> "$FAKE_LOG/requeued" ;;
  *) echo "unexpected scontrol $*" >&2; exit 1 ;;
esac
"""


@pytest.fixture
def fake_slurm(tmp_path):
    if BASH is None:
        pytest.skip("bash is not available: the templates are bash scripts")
    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    for name, body in (("srun", FAKE_SRUN), ("scontrol", FAKE_SCONTROL)):
        (bindir / name).write_text(body)
        (bindir / name).chmod(0o755)
    log = tmp_path / "fakelog"
    log.mkdir()
    env = {
        "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}",
        "FAKE_LOG": str(log),
        "SLURM_JOB_ID": "31234",
        "SLURM_JOB_NAME": "sciml-train",
        "SLURM_JOB_NODELIST": "node[01-02]",
        "SLURM_JOB_NUM_NODES": "2",
        "SLURM_NTASKS": "8",
        "SLURM_CPUS_PER_TASK": "3",
    }
    return env, log


def _run_script(text: str, env: dict, tmp_path: Path, mode: str = "ok", **popen) -> subprocess.Popen:
    script = tmp_path / "job.sh"
    script.write_text(text)
    return subprocess.Popen(
        [BASH, str(script)], env=env | {"FAKE_SRUN_MODE": mode}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, **popen,
    )  # fmt: skip


def _srun_args(log: Path) -> list[str]:
    return (log / "srun.args").read_text().splitlines()


def test_template_fresh_start(cfg, tmp_path, fake_slurm):
    env, log = fake_slurm
    runs = tmp_path / "runs"
    spec = SlurmLaunch(nodes=2, tasks_per_node=4, config=cfg, run_root=runs, extra_args=("--x", "a b"))
    proc = _run_script(render(spec), env, tmp_path)
    out = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0, out
    job_dir = runs.resolve() / "sciml-train-31234"
    assert job_dir.is_dir()
    args = _srun_args(log)
    assert args == ["--kill-on-bad-exit=1", "--ntasks-per-node=4", sys.executable, "-m", "sciml.cli", "forecast",
                    "train", "--config", str(cfg.resolve()), "--out", str(job_dir), "--x", "a b"]  # fmt: skip
    # master = first host of the node list; port = 20000 + job id mod 10000, the rule the ranks' own
    # environment parsing uses when MASTER_PORT is absent; threads = cpus per task
    from sciml.forecasting.distributed.env import slurm_port

    assert (
        (log / "srun.env").read_text().split() == ["node01", str(slurm_port("31234")), "3"] == ["node01", "21234", "3"]
    )
    assert not (log / "requeued").exists()


def test_template_resumes_own_checkpoint_before_resume_from(cfg, tmp_path, fake_slurm):
    env, log = fake_slurm
    runs = tmp_path / "runs"
    earlier = tmp_path / "earlier.pt"
    earlier.write_bytes(b"x")
    spec = SlurmLaunch(config=cfg, run_root=runs, resume_from=earlier)
    proc = _run_script(render(spec), env, tmp_path)
    assert proc.communicate(timeout=30)[0] and proc.returncode == 0
    assert _srun_args(log)[-2:] == ["--resume", str(earlier.resolve())]
    # a requeued job finds its own checkpoint in its job folder and prefers it
    own = runs.resolve() / "sciml-train-31234" / "checkpoint.pt"
    own.write_bytes(b"y")
    proc = _run_script(render(spec), env | {"SLURM_RESTART_COUNT": "1"}, tmp_path)
    out = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0
    assert _srun_args(log)[-2:] == ["--resume", str(own)]
    assert "restart 1" in out and f"resuming from {own}" in out


def test_template_propagates_srun_failure(cfg, tmp_path, fake_slurm):
    env, log = fake_slurm
    proc = _run_script(render(SlurmLaunch(config=cfg, run_root=tmp_path)), env, tmp_path, mode="fail")
    out = proc.communicate(timeout=30)[0]
    assert proc.returncode == 5, out
    assert "srun exited with 5" in out and not (log / "requeued").exists()


def test_template_requeues_when_the_training_asks_to_be_resumed(cfg, tmp_path, fake_slurm):
    """Exit code 3 (sciml.errors.EXIT_RESUME: stopped by a signal, checkpoint written) requeues the job."""
    env, log = fake_slurm
    proc = _run_script(render(SlurmLaunch(config=cfg, run_root=tmp_path)), env, tmp_path, mode="resume_me")
    out = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0, out
    assert "srun exited with 3" in out and (log / "requeued").read_text().split() == ["31234"], out


def test_template_usr1_checkpoints_then_requeues(cfg, tmp_path, fake_slurm):
    env, log = fake_slurm
    runs = tmp_path / "runs"
    proc = _run_script(render(SlurmLaunch(config=cfg, run_root=runs)), env, tmp_path, mode="wait_usr1")
    deadline = time.monotonic() + 20
    while not (log / "srun.started").exists():
        assert time.monotonic() < deadline and proc.poll() is None, "fake srun never started"
        time.sleep(0.02)
    proc.send_signal(signal.SIGUSR1)  # what --signal=B:USR1@T does before the time limit
    out = proc.communicate(timeout=30)[0]
    assert (log / "srun.got_usr1").exists(), out  # forwarded to the step (the ranks checkpoint)
    assert (log / "requeued").read_text().split() == ["31234"], out
    assert proc.returncode == 0, out
    assert "srun exited with 0" in out  # waited for the step to finish, not just until the signal
    assert "no checkpoint yet, it will start over" in out


def test_builtin_config_names_pass_through_and_unknown_names_fail(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no file called 'tiny' here
    text = render(SlurmLaunch(config="tiny", run_root=tmp_path))
    assert "\nCONFIG=tiny\n" in text
    with pytest.raises(UsageError, match="--config 'tinny' is not a file"):
        SlurmLaunch(config="tinny")


def test_constants_agree_with_the_training_command():
    from sciml.forecasting.slurm import BUILTIN_CONFIGS, DEFAULT_CHECKPOINT_NAME
    from sciml.forecasting.train import CHECKPOINT_NAME
    from sciml.forecasting.train.config import BUILTIN_PACKAGE

    assert DEFAULT_CHECKPOINT_NAME == CHECKPOINT_NAME  # the file whose presence makes a requeued job resume
    assert BUILTIN_CONFIGS == BUILTIN_PACKAGE


def test_infer_runs_on_many_ranks(tmp_path):
    """`sciml forecast infer` has a parallel layout (tiles x members x init times): multi-rank infer jobs render."""
    ckpt = tmp_path / "ck.pt"
    ckpt.write_bytes(b"x")
    spec = SlurmLaunch(kind="infer", checkpoint=ckpt, nodes=2, gpus_per_node=4, run_root=tmp_path,
                       extra_args=("--h-parallel", "2", "--w-parallel", "2", "--ensemble-parallel", "2"))  # fmt: skip
    assert spec.world_size == 8
    opts = sbatch_options(render(spec))
    assert (opts["nodes"], opts["ntasks-per-node"], opts["gpus-per-node"]) == ("2", "4", "4")
    from sciml.cli import build_parser

    args = build_parser().parse_args(["forecast", "infer", "--checkpoint", "c", "--init", "x", "--lead", "1d",
                                      "--out", "o", *spec.extra_args])  # fmt: skip
    assert (args.h_parallel, args.w_parallel, args.ensemble_parallel) == (2, 2, 2)


def test_rank_command_line_is_accepted_by_the_real_train_and_infer_parsers(cfg, tmp_path, fake_slurm):
    """The argv bash hands every rank (fake srun) parses with the actual `sciml forecast train|infer` parsers:
    the template's contract (--config/--out/--resume, --checkpoint/--out) matches the commands."""
    from sciml.cli import build_parser

    env, log = fake_slurm
    runs = tmp_path / "runs"
    spec = SlurmLaunch(config=cfg, run_root=runs, extra_args=("--h-parallel", "2", "--w-parallel", "2"))
    own = runs.resolve() / "sciml-train-31234" / "checkpoint.pt"
    own.parent.mkdir(parents=True)
    own.write_bytes(b"x")  # a requeued job: --resume is added
    proc = _run_script(render(spec), env, tmp_path)
    assert proc.communicate(timeout=30) and proc.returncode == 0
    argv = _srun_args(log)[2:]  # after --kill-on-bad-exit and --ntasks-per-node
    assert argv[:3] == [sys.executable, "-m", "sciml.cli"]
    args = build_parser().parse_args(argv[3:])
    assert args.func.__name__ == "cmd_train"
    assert (args.config, args.out, args.resume) == (str(cfg.resolve()), own.parent, str(own))
    assert (args.h_parallel, args.w_parallel) == (2, 2)

    ckpt = tmp_path / "ck.pt"
    ckpt.write_bytes(b"x")
    spec = SlurmLaunch(kind="infer", checkpoint=ckpt, run_root=runs, tasks_per_node=2, extra_args=("--init",
                       "2001-01-05T00", "--lead", "1d", "--h-parallel", "2"))  # fmt: skip
    proc = _run_script(render(spec), env | {"SLURM_JOB_NAME": "sciml-infer"}, tmp_path)
    assert proc.communicate(timeout=30) and proc.returncode == 0
    args = build_parser().parse_args(_srun_args(log)[5:])
    assert args.func.__name__ == "cmd_infer"
    assert (args.checkpoint, args.out) == (ckpt.resolve(), runs.resolve() / "sciml-infer-31234" / "forecast.zarr")
    assert (args.init, args.lead, args.h_parallel) == (["2001-01-05T00"], "1d", 2)
