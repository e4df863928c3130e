"""``sciml forecast infer``: argparse glue; the work is in :mod:`sciml.forecasting.infer`."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from .common import add_runtime_arguments, is_rank0, writer_lock


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
    p.add_argument(
        "--overlap-writes",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="write lead k on a writer thread while lead k+1 is computed (default: on)",
    )
    p.add_argument(
        "--max-batch",
        type=int,
        default=1,
        help="most samples (member x init time) per network call: bounds memory (default 1, the fastest on a CPU; "
        "raise it on a GPU, measured by bench/infer_batch.py)",
    )
    add_runtime_arguments(p, training=False)
    from sciml.forecasting.cli.parallel import add_parallel_arguments

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
        device=args.device or "auto",
        precision=args.precision or "fp32",
        overlap_writes=args.overlap_writes,
        max_batch=args.max_batch,
    )
    from sciml.forecasting.cli.parallel import parallel_config, parallel_context
    from sciml.forecasting.runtime import RuntimeSection, resolve_device

    t0 = time.monotonic()
    progress = default_progress(getattr(args, "quiet", False))
    resolve_device(cfg.device)  # CUDA asked for where there is none: one line, on every rank, before any rendezvous
    parallel = parallel_config(args, RuntimeSection(device=cfg.device))  # the backend follows --device
    with writer_lock(args.out, is_rank0(), "sciml forecast infer"), parallel_context(parallel) as ctx:
        if ctx is None:
            res = run_inference(cfg, progress)
        else:  # under torchrun/srun: every rank computes its tile, rank 0 writes
            from sciml.forecasting.distributed.infer import run_distributed_inference

            res = run_distributed_inference(cfg, ctx, progress)
            if not res["writer"]:
                return 0
    print(
        f"wrote {res['out']}: {len(res['inits'])} init(s) x {res['members']} members x {res['steps']} steps "
        f"({time.monotonic() - t0:.1f} s)"
    )
    return 0
