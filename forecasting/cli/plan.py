"""``sciml forecast plan``: per-rank GPU memory of a training step for candidate layouts (argparse glue only).

Registered through the ``sciml.commands`` entry point ``forecast.plan``; the numbers come from
:mod:`sciml.forecasting.plan`.
"""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``plan`` to the ``forecast`` command group."""
    p = subparsers.add_parser(
        "plan",
        help="per-rank GPU memory of a training step for candidate parallel layouts",
        description="Per-rank memory (weights, gradients, Adam state, activations with and without activation "
        "checkpointing, one batch of data) of a training step of a model preset, for every h x w x ensemble x "
        "batch layout of --gpus GPUs, and the smallest spatial split that fits. Activations are measured on the "
        "model at reduced grid sizes and fitted (see sciml.forecasting.plan).",
    )
    p.add_argument("--preset", default="fcn3", help="model preset: tiny, demo, fcn3 (default; 721x1440, 72 channels)")
    p.add_argument("--nlat", type=int, default=None, help="grid latitudes (default: the preset's)")
    p.add_argument("--nlon", type=int, default=None, help="grid longitudes (default: the preset's)")
    p.add_argument("--gpus", type=int, required=True, help="number of GPUs (ranks)")
    p.add_argument("--gpu-memory", required=True, help="memory of one GPU, e.g. 80GB or 141GiB")
    p.add_argument("--members", type=int, default=2, help="ensemble members per sample (default 2)")
    p.add_argument("--batch", type=int, default=1, help="samples per step, global (default 1)")
    p.add_argument("--rollout", type=int, default=1, help="autoregressive steps trained through (default 1)")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="bf16", help="network precision (default bf16)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run_plan)


def run_plan(args: argparse.Namespace) -> int:
    from dataclasses import asdict, replace

    from sciml.forecasting.models import preset
    from sciml.forecasting.plan import HEADROOM, fit_activations, plan
    from sciml.units import parse_bytes

    cfg = preset(args.preset)
    cfg = replace(cfg, nlat=args.nlat or cfg.nlat, nlon=args.nlon or cfg.nlon)
    memory = parse_bytes(args.gpu_memory)
    results = {}
    for mode, ckpt in (("none", False), ("blocks", True)):
        if not args.json:
            print(f"measuring activations ({mode} checkpointing, {args.precision}) ...", file=sys.stderr, flush=True)
        act = fit_activations(cfg, checkpoint_blocks=ckpt, precision=args.precision)
        rows, best = plan(cfg, args.gpus, memory, act, args.members, args.batch, args.rollout)
        results[mode] = (act, rows, best)
    if args.json:
        out = {
            "preset": args.preset,
            "grid": [cfg.nlat, cfg.nlon],
            "gpus": args.gpus,
            "gpu_memory_bytes": memory,
            "headroom": HEADROOM,
            "members": args.members,
            "batch": args.batch,
            "rollout": args.rollout,
            "precision": args.precision,
            "checkpointing": {
                mode: {
                    "activation_bytes_per_member_step": act(cfg.nlat, cfg.nlon),
                    "fit": {"per_point": act.per_point, "constant": act.constant, "samples": act.samples},
                    "layouts": [{**asdict(r.layout), **_parts(r)} for r in rows],
                    "recommended": None if best is None else asdict(best.layout),
                }
                for mode, (act, rows, best) in results.items()
            },
        }
        print(json.dumps(out, indent=1))
        return 0
    gb = 1e9
    print(
        f"{args.preset} on {cfg.nlat}x{cfg.nlon}, {args.members} members x {args.batch} samples x {args.rollout}-step "
        f"rollout, {args.precision}; {args.gpus} GPUs of {memory / gb:.0f} GB (plans use {HEADROOM:.0%}); GB per rank"
    )
    rows_none, rows_blocks = results["none"][1], results["blocks"][1]
    head = f"{'h x w x ens x batch':>20} {'weights':>8} {'grads':>8} {'adam':>8} {'loader':>8} "
    head += f"{'act':>8} {'total':>8} {'act ckpt':>9} {'total ckpt':>10}"
    print(head)
    for a, b in zip(rows_none, rows_blocks, strict=True):
        lay = a.layout
        print(
            f"{f'{lay.h} x {lay.w} x {lay.ensemble} x {lay.batch}':>20} {a.weights / gb:8.2f} {a.gradients / gb:8.2f} "
            f"{a.adam / gb:8.2f} {a.loader / gb:8.2f} {a.activations / gb:8.2f} {a.total / gb:8.2f} "
            f"{b.activations / gb:9.2f} {b.total / gb:10.2f}"
        )
    for mode, (_, _, best) in results.items():
        label = "without checkpointing" if mode == "none" else "with checkpointing: blocks"
        if best is None:
            print(f"{label}: no layout of {args.gpus} GPUs fits; add GPUs or lower members/batch/rollout")
        else:
            lay = best.layout
            print(
                f"{label}: h={lay.h} w={lay.w} ensemble={lay.ensemble} batch={lay.batch} "
                f"({best.total / gb:.1f} GB per rank)"
            )
    return 0


def _parts(r) -> dict[str, float]:
    return {
        "weights": r.weights,
        "gradients": r.gradients,
        "adam": r.adam,
        "activations": r.activations,
        "loader": r.loader,
        "total": r.total,
    }
