r"""Render (and submit) the sbatch templates of ``scripts/slurm/`` with a user's resources.

A template is a bash script with ``{{name}}`` fields. :func:`render` fills every field from a validated
:class:`SlurmLaunch`, and fails if the template has a field it does not know or if any ``{{`` survives, so a
script that reaches ``sbatch`` is always complete. Values that land on ``#SBATCH`` lines are checked against
SLURM's own syntax (a space or newline there would silently end the option); values that land in bash are
quoted with :func:`shlex.quote`.

World size and the rendezvous follow from the resources:

.. math::

    N_\text{ranks} = N_\text{nodes} \times T_\text{tasks per node}, \qquad
    \text{port} = 20000 + (\text{job id} \bmod 10000),

one task per GPU when GPUs are requested (``T = G``), master address = first host of ``SLURM_JOB_NODELIST``.
The checkpoint signal is sent ``signal_s`` seconds before the time limit ``t``, and SLURM may send it up to 60 s
early, so ``0 <= signal_s`` and ``signal_s + 60 < t``, and ``signal_s <= 65535`` (SLURM's bound).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from sciml.errors import SciMLError, UsageError

JobKind = Literal["train", "infer"]
JOB_KINDS: tuple[str, ...] = ("train", "infer")
#: Repository folder holding the templates (editable installs and source checkouts).
TEMPLATE_DIR = Path(__file__).resolve().parents[1] / "scripts" / "slurm"
DEFAULT_TIME = "01:00:00"
DEFAULT_SIGNAL_S = 300
DEFAULT_CHECKPOINT_NAME = "checkpoint.pt"  # = sciml.forecasting.train.CHECKPOINT_NAME (tested)
#: Package of the built-in training configs (``--config tiny``); = sciml.forecasting.train.config.BUILTIN_PACKAGE,
#: named here so that rendering a script does not import torch (tested to agree).
BUILTIN_CONFIGS = "sciml.forecasting.configs.forecast"
MAX_SIGNAL_S = 65535
SIGNAL_SLACK_S = 60  # "the signal may be sent up to 60 seconds earlier than specified" (sbatch(1))

_FIELD = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_NAME = re.compile(r"[A-Za-z0-9_.+-]{1,128}")
_LIST = re.compile(r"[A-Za-z0-9_.+-]+(,[A-Za-z0-9_.+-]+)*")
# Characters that would break an #SBATCH line or that SLURM expands in file names (%j, %x, ...).
_SBATCH_PATH_BAD = re.compile(r"[\s%\"'$`\\]")
# SLURM --time: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S.
_TIME_FORMS = (
    (re.compile(r"(\d+)"), ("m",)),
    (re.compile(r"(\d+):(\d+)"), ("m", "s")),
    (re.compile(r"(\d+):(\d+):(\d+)"), ("h", "m", "s")),
    (re.compile(r"(\d+)-(\d+)"), ("d", "h")),
    (re.compile(r"(\d+)-(\d+):(\d+)"), ("d", "h", "m")),
    (re.compile(r"(\d+)-(\d+):(\d+):(\d+)"), ("d", "h", "m", "s")),
)
_UNIT_S = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_SUBMITTED = re.compile(r"Submitted batch job (\d+)")


def parse_time(text: str) -> int:
    """Seconds in a SLURM time limit (``30``, ``30:00``, ``12:00:00``, ``2-00``, ``2-12:30``, ``2-12:30:00``).

    Raises
    ------
    UsageError
        For any other form, for ``0`` and for minute/second fields above 59.
    """
    s = str(text).strip()
    for pattern, units in _TIME_FORMS:
        m = pattern.fullmatch(s)
        if not m:
            continue
        parts = [int(g) for g in m.groups()]
        for unit, value in zip(units, parts, strict=True):
            # the leading field may be large (e.g. 90 minutes); later minute/second fields must be < 60
            if unit in ("m", "s") and unit != units[0] and value > 59:
                raise UsageError(f"--time {text!r}: {unit} field {value} must be 0..59")
            if unit == "h" and unit != units[0] and value > 23:
                raise UsageError(f"--time {text!r}: hour field {value} must be 0..23 after 'days-'")
        total = sum(_UNIT_S[u] * v for u, v in zip(units, parts, strict=True))
        if total <= 0:
            raise UsageError(f"--time {text!r} is zero; give a positive time limit such as 01:00:00")
        return total
    raise UsageError(
        f"--time {text!r} is not a SLURM time limit; use MINUTES, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS"
    )


def default_payload(kind: JobKind) -> tuple[str, ...]:
    """The command every rank runs: this interpreter's ``sciml forecast train|infer``.

    The absolute interpreter path makes the job use the environment the launcher ran in (it must be visible on
    the compute nodes, as a shared file system provides).
    """
    return (sys.executable, "-m", "sciml.cli", "forecast", kind)


@dataclass(frozen=True)
class SlurmLaunch:
    """Everything a rendered sbatch script depends on; validated on construction.

    Attributes
    ----------
    kind
        ``"train"`` (``train.sbatch``: requeue + resume) or ``"infer"`` (``infer.sbatch``).
    nodes, tasks_per_node
        Allocation: ``nodes * tasks_per_node`` ranks. ``tasks_per_node=None`` means one per GPU (or 1 on CPU).
    gpus_per_node
        GPUs per node, 0 for CPU jobs (gloo). With GPUs there is exactly one task per GPU.
    cpus_per_task
        CPU cores per rank (data loading threads); also ``OMP_NUM_THREADS``.
    time
        SLURM time limit (``HH:MM:SS``, ``D-HH:MM``, ...).
    signal_s
        Seconds before the time limit at which the batch shell gets SIGUSR1 (checkpoint, then requeue).
    config
        Training config (train): a YAML file (made absolute, must exist) or a built-in name (``tiny``, ``demo``).
    checkpoint
        Checkpoint to run (infer); made absolute, must exist.
    resume_from
        Checkpoint of an earlier job for the first start of a training job (optional).
    run_root
        Folder of the job logs; each job writes into ``run_root/<job name>-<job id>/``.
    payload
        Command prefix every rank runs (default :func:`default_payload`).
    extra_args
        Further arguments passed to the payload (e.g. ``--h-parallel 2 --w-parallel 2``).
    """

    kind: JobKind = "train"
    nodes: int = 1
    tasks_per_node: int | None = None
    gpus_per_node: int = 0
    cpus_per_task: int = 1
    time: str = DEFAULT_TIME
    signal_s: int = DEFAULT_SIGNAL_S
    partition: str | None = None
    account: str | None = None
    job_name: str | None = None
    config: Path | str | None = None
    checkpoint: Path | None = None
    resume_from: Path | None = None
    checkpoint_name: str = DEFAULT_CHECKPOINT_NAME
    run_root: Path = Path("runs/slurm")
    payload: tuple[str, ...] | None = None
    extra_args: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.kind not in JOB_KINDS:
            raise UsageError(f"unknown job kind {self.kind!r}; choose one of {', '.join(JOB_KINDS)}")
        for name, lo in (("nodes", 1), ("gpus_per_node", 0), ("cpus_per_task", 1)):
            _check_int(name, getattr(self, name), lo)
        if self.tasks_per_node is not None:
            _check_int("tasks_per_node", self.tasks_per_node, 1)
            if self.gpus_per_node and self.tasks_per_node != self.gpus_per_node:
                raise UsageError(
                    f"--tasks-per-node {self.tasks_per_node} differs from --gpus-per-node {self.gpus_per_node}: "
                    "the template runs one task (rank) per GPU; drop --tasks-per-node or make them equal"
                )
        limit = parse_time(self.time)
        _check_int("signal_seconds", self.signal_s, 0)
        if self.signal_s > MAX_SIGNAL_S:
            raise UsageError(f"--signal-seconds {self.signal_s} exceeds SLURM's maximum {MAX_SIGNAL_S}")
        if self.kind == "train" and self.signal_s + SIGNAL_SLACK_S >= limit:
            # SLURM may send the signal up to 60 s early; at start-up it would kill the ranks before they install
            # their handler and the requeued job would get it again at once (seen on the CI cluster)
            raise UsageError(
                f"--signal-seconds {self.signal_s} + {SIGNAL_SLACK_S} (SLURM may signal up to 60 s early) is not "
                f"below the time limit {self.time} ({limit} s); use a smaller value or a longer --time"
            )
        for name in ("partition", "account"):
            value = getattr(self, name)
            if value is not None and not _LIST.fullmatch(value):
                raise UsageError(f"--{name} {value!r} is not a SLURM name (letters, digits, '_.+-', comma lists)")
        if self.job_name is not None and not _NAME.fullmatch(self.job_name):
            raise UsageError(f"--job-name {self.job_name!r}: use 1-128 letters, digits or '_.+-' (no spaces)")
        if not self.checkpoint_name or self.checkpoint_name.startswith("/") or ".." in Path(self.checkpoint_name).parts:
            raise UsageError(f"checkpoint name {self.checkpoint_name!r} must be a relative path inside the job folder")
        if self.kind == "train":
            if self.config is None or not _is_builtin_config(self.config):
                _check_file("--config", self.config, "the training config (YAML) or a built-in config name")
            if self.checkpoint is not None:
                raise UsageError("--checkpoint is for --job infer; to start training from one use --resume-from")
            if self.resume_from is not None:
                _check_file("--resume-from", self.resume_from, "a checkpoint of an earlier job")
        else:
            _check_file("--checkpoint", self.checkpoint, "the checkpoint to run")
            # any number of ranks: `sciml forecast infer` splits tiles/members/init times over them, rank 0 writes
            if self.resume_from is not None:
                raise UsageError("--resume-from applies to training jobs only (--job train)")
        if _SBATCH_PATH_BAD.search(str(self.run_root)):
            raise UsageError(
                f"--run-root {str(self.run_root)!r} contains whitespace, a quote, '$', '\\' or '%', which cannot "
                "stand on an #SBATCH line; choose a plain path"
            )
        if self.payload is not None and not self.payload:
            raise UsageError("--command is empty; give the program every rank runs, or leave it out")
        for arg in (*(self.payload or ()), *self.extra_args):
            if "\0" in arg or "\n" in arg:
                raise UsageError(f"argument {arg!r} contains a newline or NUL byte")

    @property
    def ntasks_per_node(self) -> int:
        """Tasks per node: as given, else one per GPU, else 1."""
        if self.tasks_per_node is not None:
            return self.tasks_per_node
        return self.gpus_per_node or 1

    @property
    def world_size(self) -> int:
        """Number of ranks, ``nodes * tasks_per_node``."""
        return self.nodes * self.ntasks_per_node

    @property
    def name(self) -> str:
        """Job name (default ``sciml-train`` / ``sciml-infer``)."""
        return self.job_name or f"sciml-{self.kind}"


def _check_int(name: str, value: object, lo: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"--{name.replace('_', '-')} must be an integer, got {value!r}")
    if value < lo:
        raise UsageError(f"--{name.replace('_', '-')} must be >= {lo}, got {value}")


def _check_file(flag: str, path: Path | str | None, what: str) -> None:
    if path is None:
        raise UsageError(f"{flag} FILE is required: {what}")
    if not Path(path).is_file():
        raise UsageError(f"{flag} {str(path)!r} is not a file ({what})")


def _is_builtin_config(name: str | Path) -> bool:
    """``name`` is a bare word (no folder, no suffix), not a file here, and a built-in training config."""
    text = str(name)
    if Path(text).exists() or not re.fullmatch(r"[A-Za-z0-9_-]+", text):
        return False
    from importlib import resources

    try:
        return resources.files(BUILTIN_CONFIGS).joinpath(f"{text}.yaml").is_file()
    except ModuleNotFoundError:
        return False


def template_path(kind: JobKind, template: str | os.PathLike[str] | None = None) -> Path:
    """The template file: ``template`` if given, else ``scripts/slurm/<kind>.sbatch`` of the source tree."""
    path = Path(template) if template is not None else TEMPLATE_DIR / f"{kind}.sbatch"
    if not path.is_file():
        hint = "" if template is not None else " (non-editable install? pass --template scripts/slurm/<kind>.sbatch)"
        raise UsageError(f"sbatch template {str(path)!r} not found{hint}")
    return path


def template_fields(text: str) -> set[str]:
    """Names of the ``{{name}}`` fields in a template."""
    return set(_FIELD.findall(text))


def _sbatch_line(option: str, value: object | None, absent: str) -> str:
    return f"#SBATCH --{option}={value}" if value else f"# {absent}"


def field_values(spec: SlurmLaunch) -> dict[str, str]:
    """The text substituted for each template field (already quoted where it lands in bash)."""
    run_root = Path(spec.run_root).expanduser().resolve()

    def q(path: Path | str | None) -> str:
        return shlex.quote(str(Path(path).expanduser().resolve())) if path is not None else "''"

    return {
        "job_name": spec.name,
        "nodes": str(spec.nodes),
        "tasks_per_node": str(spec.ntasks_per_node),
        "cpus_per_task": str(spec.cpus_per_task),
        "gpus_line": _sbatch_line("gpus-per-node", spec.gpus_per_node, "CPU job: add --gpus-per-node=G for GPUs"),
        "partition_line": _sbatch_line("partition", spec.partition, "partition: the cluster's default"),
        "account_line": _sbatch_line("account", spec.account, "account: your default"),
        "time": spec.time.strip(),
        "signal_seconds": str(spec.signal_s),
        "run_root": str(run_root),
        "run_root_q": shlex.quote(str(run_root)),
        "checkpoint_name": shlex.quote(spec.checkpoint_name),
        "config": shlex.quote(str(spec.config)) if _is_builtin_config(spec.config or "") else q(spec.config),
        "checkpoint": q(spec.checkpoint),
        "resume_from": q(spec.resume_from),
        "payload": shlex.join(spec.payload or default_payload(spec.kind)),
        "extra_args": shlex.join(spec.extra_args),
    }


def render_text(text: str, values: Mapping[str, str]) -> str:
    """Replace every ``{{name}}`` in ``text``; unknown fields and leftovers are errors (a template bug)."""
    missing = template_fields(text) - set(values)
    if missing:
        raise SciMLError(f"template fields without a value: {', '.join(sorted(missing))}")
    out = _FIELD.sub(lambda m: values[m.group(1)], text)
    if "{{" in out:  # only the opening pair: bash itself writes '}}' (${a:+${b}})
        line = next(i for i, t in enumerate(out.splitlines(), 1) if "{{" in t)
        raise SciMLError(f"rendered script still contains '{{{{' on line {line} (malformed template field)")
    return out


def render(spec: SlurmLaunch, template: str | os.PathLike[str] | None = None) -> str:
    """The sbatch script for ``spec`` from its template (see :func:`template_path`)."""
    return render_text(template_path(spec.kind, template).read_text(), field_values(spec))


@dataclass(frozen=True)
class Submission:
    """A submitted job: its id, the script file, and (with ``wait``) the job's exit code."""

    job_id: int
    script: Path
    returncode: int | None


def submit(
    spec: SlurmLaunch,
    script_text: str,
    *,
    wait: bool = False,
    sbatch: Sequence[str] = ("sbatch",),
    on_submitted=None,
) -> Submission:
    """Write the script under ``run_root`` and submit it with ``sbatch`` (``--wait``: block until the job ends).

    The run root is created first because SLURM opens the job log there and does not create folders. The job
    runs in the current directory (relative paths mean what they mean here).
    ``on_submitted(job_id)`` is called as soon as sbatch reports the id (before a ``--wait`` finishes).

    Raises
    ------
    SciMLError
        When sbatch is missing or rejects the job (its message is included).
    """
    run_root = Path(spec.run_root).expanduser().resolve()
    run_root.mkdir(parents=True, exist_ok=True)
    from sciml.io import atomic_write_text

    stamp = f"{os.getpid()}-{int.from_bytes(os.urandom(3), 'big'):06x}"
    script = atomic_write_text(run_root / f"{spec.name}-{stamp}.sbatch", script_text)
    cmd = [*sbatch, *(["--wait"] if wait else []), str(script)]
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    except FileNotFoundError:
        raise SciMLError(f"{sbatch[0]!r} not found: run on a SLURM login node, or print the script instead") from None
    job_id = None
    assert proc.stdout is not None and proc.stderr is not None
    for line in proc.stdout:  # sbatch prints the id at submission, long before --wait returns
        m = _SUBMITTED.search(line)
        if m and job_id is None:
            job_id = int(m.group(1))
            if on_submitted is not None:
                on_submitted(job_id)
    rc = proc.wait()
    err = proc.stderr.read().strip()
    if job_id is None:
        raise SciMLError(f"sbatch rejected {script} (exit {rc}): {err or 'no message'}")
    return Submission(job_id, script, rc if wait else None)
