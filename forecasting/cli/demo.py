"""``sciml forecast demo``: argparse glue; the work is in :mod:`sciml.forecasting.demo`."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import parse_set


def register_demo(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo",
        help="synthetic data -> train -> ensemble forecasts -> scores -> plots, end to end",
        description="The forecasting demo. Default: a short run (minutes on 2 cores, config 'quick'); --full: "
        "the demo config on the built-in year-long dataset (make demo-forecast).",
    )
    p.add_argument("--out", type=Path, default=Path("runs/demo/forecast"), help="output folder")
    p.add_argument("--full", action="store_true", help="full demo config (about 18 minutes on 2 cores)")
    p.add_argument(
        "--config",
        default=None,
        help="train this config (built-in name or YAML path) instead of the demo's: quick, or demo with --full",
    )
    p.add_argument("--members", type=int, default=None, help="ensemble size of the forecasts")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a training config key")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from sciml.forecasting.demo import run_demo

    overrides = parse_set(args.set)
    return run_demo(args.out, full=args.full, members=args.members, overrides=overrides, config=args.config)
