"""``sciml forecast launch --slurm ...``: render the sbatch template with the user's values; print or submit it.

Registered through the ``sciml.commands`` entry point ``forecast.launch``. Everything after ``--`` is passed to
the training (or inference) command of every rank, e.g. ``-- --h-parallel 2 --w-parallel 2``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from sciml.errors import UsageError

from ..slurm import DEFAULT_CHECKPOINT_NAME, DEFAULT_SIGNAL_S, DEFAULT_TIME, JOB_KINDS, SlurmLaunch, render, submit


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``launch`` to the ``forecast`` command group."""
    p = subparsers.add_parser(
        "launch",
        help="render (or submit) the SLURM batch script for distributed training or inference",
        description=(
            "Render scripts/slurm/{train,infer}.sbatch with your resources and print it, or submit it with "
            "sbatch (--submit) and print the job id. Arguments after '--' go to every rank's command."
        ),
    )
    p.add_argument("--slurm", action="store_true", help="launch with SLURM (the only launcher so far; required)")
    p.add_argument("--job", choices=JOB_KINDS, default="train", help="template: train (requeue/resume) or infer")
    p.add_argument("--config", type=Path, help="training config: a YAML file or a built-in name (train)")
    p.add_argument("--checkpoint", type=Path, help="checkpoint to run (infer)")
    p.add_argument("--resume-from", type=Path, help="start training from this checkpoint of an earlier job")
    p.add_argument("--nodes", type=int, default=1, help="nodes (default 1)")
    p.add_argument("--tasks-per-node", type=int, help="ranks per node (default: one per GPU, or 1 on CPU)")
    p.add_argument("--gpus-per-node", type=int, default=0, help="GPUs per node; one rank per GPU (default 0: CPU)")
    p.add_argument("--cpus-per-task", type=int, default=1, help="CPU cores per rank, also OMP_NUM_THREADS")
    p.add_argument("--partition", help="SLURM partition (default: the cluster's)")
    p.add_argument("--account", help="SLURM account (default: yours)")
    p.add_argument(
        "--time", default=DEFAULT_TIME, help=f"time limit, e.g. 12:00:00 or 2-00:00 (default {DEFAULT_TIME})"
    )
    p.add_argument(
        "--signal-seconds",
        type=int,
        default=DEFAULT_SIGNAL_S,
        help=f"checkpoint this many seconds before the time limit, then requeue (default {DEFAULT_SIGNAL_S})",
    )
    p.add_argument("--job-name", help="job name (default sciml-train / sciml-infer)")
    p.add_argument("--run-root", type=Path, default=Path("runs/slurm"), help="job logs and job folders (runs/slurm)")
    p.add_argument(
        "--checkpoint-name",
        default=DEFAULT_CHECKPOINT_NAME,
        help=f"checkpoint file inside the job folder whose presence means resume ({DEFAULT_CHECKPOINT_NAME})",
    )
    p.add_argument(
        "--command",
        dest="payload",
        metavar="CMD",
        help="program every rank runs instead of `sciml forecast train|infer` (quoted, e.g. for a smoke test)",
    )
    p.add_argument("--template", type=Path, help="use this template instead of scripts/slurm/<job>.sbatch")
    p.add_argument("--submit", action="store_true", help="submit with sbatch and print the job id")
    p.add_argument("--wait", action="store_true", help="with --submit: block until the job ends; exit with its code")
    p.add_argument("-o", "--output", type=Path, help="write the script to this file instead of printing it")
    p.add_argument("extra", nargs=argparse.REMAINDER, help="-- ARGS...: passed on to every rank's command")
    p.set_defaults(func=run_launch)


def spec_from_args(args: argparse.Namespace) -> SlurmLaunch:
    """Build the validated launch spec from parsed arguments."""
    if not args.slurm:
        raise UsageError("sciml forecast launch needs --slurm (the only launcher supported so far)")
    if args.wait and not args.submit:
        raise UsageError("--wait only makes sense with --submit")
    extra = list(args.extra)
    if extra and extra[0] == "--":
        extra = extra[1:]
    elif extra:
        raise UsageError(f"unexpected arguments {extra}; put arguments for the ranks' command after '--'")
    payload = None
    if args.payload is not None:
        try:
            payload = tuple(shlex.split(args.payload))
        except ValueError as exc:
            raise UsageError(f"--command {args.payload!r}: {exc}") from None
        if not payload:
            raise UsageError("--command is empty")
    return SlurmLaunch(
        kind=args.job,
        nodes=args.nodes,
        tasks_per_node=args.tasks_per_node,
        gpus_per_node=args.gpus_per_node,
        cpus_per_task=args.cpus_per_task,
        time=args.time,
        signal_s=args.signal_seconds,
        partition=args.partition,
        account=args.account,
        job_name=args.job_name,
        config=args.config,
        checkpoint=args.checkpoint,
        resume_from=args.resume_from,
        checkpoint_name=args.checkpoint_name,
        run_root=args.run_root,
        payload=payload,
        extra_args=tuple(extra),
    )


def run_launch(args: argparse.Namespace) -> int:
    """Print, write or submit the rendered script; with ``--wait`` return the job's exit code."""
    spec = spec_from_args(args)
    text = render(spec, args.template)
    if args.output is not None:
        from sciml.io import atomic_write_text

        atomic_write_text(args.output, text)
        print(f"wrote {args.output} ({spec.world_size} ranks on {spec.nodes} node(s))", file=sys.stderr)
    if not args.submit:
        if args.output is None:
            sys.stdout.write(text)
        return 0

    def announce(job_id: int) -> None:
        print(job_id, flush=True)
        print(
            f"submitted job {job_id}: {spec.world_size} ranks; log {Path(spec.run_root).resolve()}/{spec.name}-"
            f"{job_id}.out; watch with: squeue -j {job_id}",
            file=sys.stderr,
            flush=True,
        )

    sub = submit(spec, text, wait=args.wait, on_submitted=announce)
    if args.wait:
        print(f"job {sub.job_id} finished with exit code {sub.returncode}", file=sys.stderr)
        return int(sub.returncode or 0)
    return 0
