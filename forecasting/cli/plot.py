"""``sciml plot forecast`` and ``sciml plot data``: argparse glue; the work is in :mod:`sciml.forecasting.eval.plots`
and :mod:`sciml.forecasting.eval.plot_data`."""

from __future__ import annotations

import argparse
from pathlib import Path

from sciml.errors import UsageError


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
    from sciml.forecasting.eval.plots import plot_all

    if (args.forecast is None) != (args.truth is None):
        raise UsageError("maps need both --forecast and --truth (or neither)")
    for f in plot_all(args.scores, args.out, args.forecast, args.truth, args.format):
        print(f"wrote {f}")
    return 0


def register_plot_data(subparsers: argparse._SubParsersAction) -> None:
    """``sciml plot data``: a map and a power spectrum per channel of a store or source file."""
    from sciml.forecasting.data.layouts import LAYOUTS

    p = subparsers.add_parser("data", help="map and angular power spectrum of each channel of a dataset")
    p.add_argument("src", type=Path, help="canonical store or any supported source (GRIB, CDS NetCDF, WB2 zarr)")
    p.add_argument("--channel", action="append", default=None, help="channel to plot (repeatable; default all)")
    p.add_argument("--time", default=None, help="time to plot, e.g. 2017-01-01T12 (default: the first)")
    p.add_argument("--member", default=None, help="ensemble member of a multi-member source (N or all)")
    p.add_argument("--layout", choices=LAYOUTS, default=None, help="force the input layout")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--format", default="png", choices=["png", "pdf", "svg"], help="image format (default png)")
    p.set_defaults(func=cmd_plot_data)


def cmd_plot_data(args: argparse.Namespace) -> int:
    from sciml.forecasting.data.ecmwf import parse_member
    from sciml.forecasting.eval.plot_data import plot_data

    files = plot_data(
        args.src,
        args.out,
        channels=args.channel,
        time=args.time,
        member=parse_member(args.member),
        layout=args.layout,
        fmt=args.format,
    )
    for f in files:
        print(f"wrote {f}")
    return 0
