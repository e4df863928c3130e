"""``sciml forecast score``: argparse glue; the work is in :mod:`sciml.forecasting.eval.score`."""

from __future__ import annotations

import argparse
from pathlib import Path


def register_score(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "score",
        help="CRPS, ensemble-mean RMSE, SSR, ACC, rank histograms, spectra vs truth, with baselines",
        description="Score a forecast store against a truth store per channel and lead time, with persistence, "
        "climatological-mean and probabilistic-climatology baselines on the same cases, and on `sciml data synth` "
        "stores the perfect-model ensemble of the generator (--baselines ...,physics).",
    )
    p.add_argument("forecast", type=Path, help="forecast zarr of `sciml forecast infer`")
    p.add_argument("--truth", type=Path, required=True, help="canonical truth store")
    p.add_argument("--climatology", type=Path, default=None, help="statistics file (default TRUTH.stats.nc)")
    p.add_argument("--clim-start", default=None, help="probabilistic climatology period start (default: training)")
    p.add_argument("--clim-end", default=None, help="probabilistic climatology period end (default: training)")
    p.add_argument(
        "--baselines",
        default="persistence,climatology",
        metavar="NAMES",
        help="comma-separated baselines among persistence, climatology, physics (default persistence,climatology); "
        "physics: the perfect-model ensemble of a `sciml data synth` truth store, cases x (members+1) runs of its "
        "generator (minutes for a year of weekly cases)",
    )
    p.add_argument("--out", type=Path, required=True, help="scores NetCDF file (SCORES.nc)")
    p.set_defaults(func=cmd_score)


def cmd_score(args: argparse.Namespace) -> int:
    from sciml.forecasting.eval.score import ScoreConfig, format_table, parse_baselines, score_forecast
    from sciml.progress import default_progress

    cfg = ScoreConfig(
        forecast=args.forecast,
        truth=args.truth,
        out=args.out,
        stats=args.climatology,
        clim_start=args.clim_start,
        clim_end=args.clim_end,
        baselines=parse_baselines(args.baselines),
    )
    scores = score_forecast(cfg, default_progress(getattr(args, "quiet", False)))
    print(format_table(scores))
    if "crps_physics_cases" in scores:
        from sciml.forecasting.eval.bootstrap import format_ratio_rows, ratio_rows

        print(format_ratio_rows(ratio_rows(scores)))
    print(f"wrote {args.out}")
    return 0
