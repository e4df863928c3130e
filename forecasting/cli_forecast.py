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
    from sciml.forecasting.distributed.cli import add_parallel_arguments

    add_parallel_arguments(p)
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    import torch

    from sciml.errors import EXIT_OK, EXIT_RESUME
    from sciml.forecasting.train import CHECKPOINT_NAME, load_train_config
    from sciml.progress import default_progress
    from sciml.runinfo import RunInfo

    info = RunInfo(command="sciml forecast train")
    t0 = time.monotonic()
    cfg = load_train_config(args.config, _parse_set(args.set))
    out = args.out or Path("runs/forecast") / cfg.name
    resume = None
    if args.resume is not None:
        resume = Path(args.resume) if args.resume else out / CHECKPOINT_NAME
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    from sciml.forecasting.distributed.cli import make_trainer, parallel_config

    with _writer_lock(out, _rank0(), "sciml forecast train"):
        progress = default_progress(getattr(args, "quiet", False))
        trainer, ctx = make_trainer(cfg, out, parallel_config(args, cfg.threads), resume=resume, progress=progress)
        info.seed = cfg.seed
        status = "failed"
        try:
            with _stop_on_signals(trainer):
                _write_run(trainer, out, cfg, info, "running")
                status = trainer.run(args.max_steps)
        finally:
            _write_run(trainer, out, cfg, info, status)
            if ctx is not None:
                ctx.close()
    s = trainer.summary()
    last = trainer.log.valid[-1] if trainer.log.valid else {}
    val = " ".join(f"{k}={v:.4g}" for k, v in last.items() if k != "step")
    print(
        f"{status}: step {s['step']}/{s['total_steps']}, last loss {s['last_loss']}, {val} "
        f"({time.monotonic() - t0:.1f} s); checkpoint {s['checkpoint']}"
    )
    return EXIT_RESUME if status == "interrupted" else EXIT_OK


def _rank0() -> bool:
    """Whether this process is rank 0 of its launcher (torchrun, srun) or runs alone: the one that writes."""
    import os

    from sciml.forecasting.distributed.env import launch_env

    return launch_env(os.environ, host_of=lambda hosts: hosts).rank == 0


def _writer_lock(out: Path, writer: bool, command: str):
    """The run lock of ``out`` (:mod:`sciml.runlock`), held by the writing rank only."""
    from sciml.runlock import run_lock

    return run_lock(out, command) if writer else contextlib.nullcontext()


def _write_run(trainer, out: Path, cfg, info, status: str) -> None:
    """``config.yaml`` and ``run.json`` (wall time so far, ``status``: running, done, interrupted, failed)."""
    from sciml.runinfo import write_run_dir

    if trainer.hooks.is_writer():
        info.timings.update(train_steps=trainer.wall)
        info.status = status
        write_run_dir(out, cfg, info)


# ---------------------------------------------------------------------------------------------------- infer
def register_infer(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "infer",
        help="autoregressive ensemble forecasts from a checkpoint (WeatherBench 2 zarr layout)",
        description="Roll the trained model out from one or more initial times with AR(1) noise ensembles and "
        "write (time, prediction_timedelta, realization, lat, lon) per channel, denormalised, one lead at a time.",
    )
    p.add_argument("--checkpoint", type=Path, required=True, help="checkpoint.pt of `sciml forecast train`")
    p.add_argument("--init", action="append", required=True, help="initial time, e.g. 2004-01-05T00 (repeatable)")
    p.add_argument("--lead", required=True, help="forecast length, a multiple of the model step (e.g. 10d, 36h)")
    p.add_argument("--members", type=int, default=16, help="ensemble size (default 16)")
    p.add_argument("--out", type=Path, required=True, help="output zarr store (FC.zarr)")
    p.add_argument("--data", type=Path, default=None, help="initial-condition store (default: the training store)")
    p.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    p.add_argument("--antithetic", action="store_true", help="antithetic noise pairs (needs an even --members)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output store")
    from sciml.forecasting.distributed.cli import add_parallel_arguments

    add_parallel_arguments(p)
    p.set_defaults(func=cmd_infer)


def cmd_infer(args: argparse.Namespace) -> int:
    from sciml.forecasting.infer import InferConfig, run_inference
    from sciml.progress import default_progress

    cfg = InferConfig(
        checkpoint=args.checkpoint,
        inits=tuple(args.init),
        lead=args.lead,
        members=args.members,
        out=args.out,
        store=args.data,
        seed=args.seed,
        centered=args.antithetic,
        overwrite=args.overwrite,
    )
    from sciml.forecasting.distributed.cli import parallel_config, wants_parallel

    t0 = time.monotonic()
    progress = default_progress(getattr(args, "quiet", False))
    parallel = parallel_config(args)
    with _writer_lock(args.out, _rank0(), "sciml forecast infer"):
        if wants_parallel(parallel):  # under torchrun/srun: every rank computes its tile, rank 0 writes
            from sciml.forecasting.distributed.infer import run_distributed_inference

            res = run_distributed_inference(cfg, parallel, progress)
            if not res["writer"]:
                return 0
        else:
            res = run_inference(cfg, progress)
    print(
        f"wrote {res['out']}: {len(res['inits'])} init(s) x {res['members']} members x {res['steps']} steps "
        f"({time.monotonic() - t0:.1f} s)"
    )
    return 0


# ---------------------------------------------------------------------------------------------------- score
def register_score(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "score",
        help="CRPS, ensemble-mean RMSE, SSR, ACC, rank histograms, spectra vs truth, with baselines",
        description="Score a forecast store against a truth store per channel and lead time, with persistence, "
        "climatological-mean and probabilistic-climatology baselines on the same cases.",
    )
    p.add_argument("forecast", type=Path, help="forecast zarr of `sciml forecast infer`")
    p.add_argument("--truth", type=Path, required=True, help="canonical truth store")
    p.add_argument("--climatology", type=Path, default=None, help="statistics file (default TRUTH.stats.nc)")
    p.add_argument("--clim-start", default=None, help="probabilistic climatology period start (default: training)")
    p.add_argument("--clim-end", default=None, help="probabilistic climatology period end (default: training)")
    p.add_argument("--out", type=Path, required=True, help="scores NetCDF file (SCORES.nc)")
    p.set_defaults(func=cmd_score)


def cmd_score(args: argparse.Namespace) -> int:
    from sciml.forecasting.score import ScoreConfig, format_table, score_forecast
    from sciml.progress import default_progress

    cfg = ScoreConfig(
        forecast=args.forecast,
        truth=args.truth,
        out=args.out,
        stats=args.climatology,
        clim_start=args.clim_start,
        clim_end=args.clim_end,
    )
    scores = score_forecast(cfg, default_progress(getattr(args, "quiet", False)))
    print(format_table(scores))
    print(f"wrote {args.out}")
    return 0


# ---------------------------------------------------------------------------------------------------- plot
def register_plot(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "forecast",
        help="skill vs lead, rank histograms, power spectra and maps of a scored forecast",
    )
    p.add_argument("scores", type=Path, help="SCORES.nc of `sciml forecast score`")
    p.add_argument("--forecast", type=Path, default=None, help="forecast zarr (for maps)")
    p.add_argument("--truth", type=Path, default=None, help="truth store (for maps)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--format", default="png", choices=["png", "pdf", "svg"], help="image format (default png)")
    p.set_defaults(func=cmd_plot)


def cmd_plot(args: argparse.Namespace) -> int:
    from sciml.forecasting.plots import plot_all

    if (args.forecast is None) != (args.truth is None):
        raise UsageError("maps need both --forecast and --truth (or neither)")
    for f in plot_all(args.scores, args.out, args.forecast, args.truth, args.format):
        print(f"wrote {f}")
    return 0


# ---------------------------------------------------------------------------------------------------- demo
def register_demo(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo",
        help="synthetic data -> train -> ensemble forecasts -> scores -> plots, end to end",
        description="The forecasting demo. Default: a short run (minutes on 2 cores, config 'quick'); --full: "
        "the demo config on the built-in year-long dataset (make demo-forecast).",
    )
    p.add_argument("--out", type=Path, default=Path("runs/demo/forecast"), help="output folder")
    p.add_argument("--full", action="store_true", help="full demo config (about 10+ minutes of training)")
    p.add_argument("--members", type=int, default=None, help="ensemble size of the forecasts")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a training config key")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from sciml.forecasting.demo import run_demo

    return run_demo(args.out, full=args.full, members=args.members, overrides=_parse_set(args.set))
