"""``sciml forecast train | infer | score | demo`` and ``sciml plot forecast``: argparse glue only.

Registered through ``sciml.commands`` entry points (``forecast.train``, ``forecast.infer``, ``forecast.score``,
``forecast.demo``, ``plot.forecast``); the work is in :mod:`sciml.forecasting.train`,
:mod:`sciml.forecasting.infer`, :mod:`sciml.forecasting.score` and :mod:`sciml.forecasting.plots`.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import time
from collections.abc import Iterator
from pathlib import Path

from sciml.errors import UsageError

LOGGER = logging.getLogger(__name__)


def _parse_set(items: list[str]) -> dict:
    import yaml

    out = {}
    for text in items:
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set expects KEY=VALUE (dotted keys, e.g. stages.0.steps=10), got {text!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


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


# ---------------------------------------------------------------------------------------------------- train
def register_train(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a forecasting model (curriculum stages, resumable checkpoints)",
        description="Train the FCN3-style model with the curriculum of a config (a YAML path or a built-in name: "
        "demo, quick, tiny). Writes OUT/config.yaml, checkpoint.pt, train.csv, valid.csv, metrics.json.",
    )
    p.add_argument("--config", required=True, help="YAML file or built-in config name (demo, quick, tiny)")
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
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    import torch
    from sciml.forecasting.train import CHECKPOINT_NAME, Trainer, load_train_config

    from sciml.progress import default_progress
    from sciml.runinfo import RunInfo, write_run_dir

    cfg = load_train_config(args.config, _parse_set(args.set))
    out = args.out or Path("runs/forecast") / cfg.name
    resume = None
    if args.resume is not None:
        resume = Path(args.resume) if args.resume else out / CHECKPOINT_NAME
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    trainer = Trainer(cfg, out, resume=resume, progress=default_progress(getattr(args, "quiet", False)))
    info = RunInfo(command="sciml forecast train", seed=cfg.seed)
    if trainer.hooks.is_writer():
        write_run_dir(out, cfg, info)
    t0 = time.monotonic()
    with _stop_on_signals(trainer):
        status = trainer.run(args.max_steps)
    s = trainer.summary()
    last = trainer.log.valid[-1] if trainer.log.valid else {}
    val = " ".join(f"{k}={v:.4g}" for k, v in last.items() if k != "step")
    print(
        f"{status}: step {s['step']}/{s['total_steps']}, last loss {s['last_loss']}, {val} "
        f"({time.monotonic() - t0:.1f} s); checkpoint {s['checkpoint']}"
    )
    return 0
