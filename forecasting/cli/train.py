"""``sciml forecast train``: argparse glue; the work is in :mod:`sciml.forecasting.train`."""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import time
from collections.abc import Iterator
from pathlib import Path

from .common import add_runtime_arguments, is_rank0, parse_set, runtime_overrides, writer_lock

LOGGER = logging.getLogger(__name__)


@contextlib.contextmanager
def _stop_on_signals(trainer) -> Iterator[None]:
    """SIGUSR1 (SLURM's warning before the time limit) and SIGTERM (preemption): checkpoint, then stop."""

    def handler(signum, frame):
        LOGGER.warning("received signal %d: stopping after the current step", signum)
        trainer.stop_requested = True

    old = {}
    for sig in (signal.SIGUSR1, signal.SIGTERM):
        try:
            old[sig] = signal.signal(sig, handler)
        except ValueError:  # not in the main thread
            pass
    try:
        yield
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


def register_train(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a forecasting model (curriculum stages, resumable checkpoints)",
        description="Train the FCN3-style model with the curriculum of a config (a YAML path or a built-in name: "
        "demo, quick, tiny). Writes OUT/config.yaml, checkpoint.pt, train.csv, valid.csv, metrics.json.",
    )
    p.add_argument("--config", default="demo", help="YAML file or built-in config name: demo (default), quick, tiny")
    p.add_argument("--out", type=Path, default=None, help="run folder (default runs/forecast/NAME)")
    p.add_argument(
        "--resume",
        nargs="?",
        const="",
        default=None,
        metavar="CKPT",
        help="continue from CKPT (default OUT/checkpoint.pt); the loss trajectory continues exactly",
    )
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many global steps (checkpointed)")
    from sciml.forecasting.cli.parallel import add_parallel_arguments

    add_runtime_arguments(p)
    add_parallel_arguments(p)
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    from sciml.errors import EXIT_OK, EXIT_RESUME
    from sciml.forecasting.runtime import apply_threads
    from sciml.forecasting.train import CHECKPOINT_NAME, load_train_config
    from sciml.progress import default_progress
    from sciml.runinfo import RunInfo

    info = RunInfo(command="sciml forecast train")
    t0 = time.monotonic()
    cfg = load_train_config(args.config, {**parse_set(args.set), **runtime_overrides(args)})
    out = args.out or Path("runs/forecast") / cfg.name
    resume = None
    if args.resume is not None:
        resume = Path(args.resume) if args.resume else out / CHECKPOINT_NAME
    apply_threads(cfg.runtime)
    from sciml.forecasting.cli.parallel import parallel_config, parallel_context

    progress = default_progress(getattr(args, "quiet", False))
    parallel = parallel_config(args, cfg.runtime)
    with writer_lock(out, is_rank0(), "sciml forecast train"), parallel_context(parallel) as ctx:
        trainer = make_trainer(cfg, out, ctx, resume, progress)
        info.seed = cfg.seed
        status = "failed"
        try:
            with _stop_on_signals(trainer):
                _write_run(trainer, out, cfg, info, "running")
                status = trainer.run(args.max_steps)
        finally:
            _write_run(trainer, out, cfg, info, status)
    s = trainer.summary()
    last = trainer.log.valid[-1] if trainer.log.valid else {}
    val = " ".join(f"{k}={v:.4g}" for k, v in last.items() if k != "step")
    print(
        f"{status}: step {s['step']}/{s['total_steps']}, last loss {s['last_loss']}, {val} "
        f"({time.monotonic() - t0:.1f} s); checkpoint {s['checkpoint']}"
    )
    return EXIT_RESUME if status == "interrupted" else EXIT_OK


def make_trainer(cfg, out: Path, ctx, resume: Path | None = None, progress=None):
    """The serial :class:`~sciml.forecasting.train.Trainer` without a parallel context, else the
    :class:`~sciml.forecasting.distributed.trainer.TiledTrainer` on ``ctx``'s mesh (progress shown by rank 0)."""
    if ctx is None:
        from sciml.forecasting.train import Trainer

        return Trainer(cfg, out, resume=resume, progress=progress)
    from sciml.forecasting.distributed.hooks import DistributedTrainHooks
    from sciml.forecasting.distributed.trainer import TiledTrainer

    hooks = DistributedTrainHooks(ctx)
    return TiledTrainer(cfg, out, hooks=hooks, resume=resume, progress=progress if ctx.rank == 0 else None)


def _write_run(trainer, out: Path, cfg, info, status: str) -> None:
    """``config.yaml`` and ``run.json`` (wall time so far, ``status``: running, done, interrupted, failed)."""
    from sciml.runinfo import write_run_dir

    if trainer.hooks.is_writer():
        info.timings.update(train_steps=trainer.wall)
        keys = ("device", "device_name", "precision", "checkpointing", "compile", "steps_per_s")
        summary = trainer.summary()
        info.runtime = {k: summary[k] for k in (*keys, "peak_device_memory_bytes")}
        info.status = status
        write_run_dir(out, cfg, info)
