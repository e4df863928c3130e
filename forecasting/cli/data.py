"""``sciml data synth | stats | convert | regrid | check``: argparse glue; the work is in ``sciml.forecasting.data``.

Registered through the ``sciml.commands`` entry point ``data.core`` (see pyproject.toml).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
from pathlib import Path

LOGGER = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the data sub-commands to the ``sciml data`` group."""
    from sciml.forecasting.data.layouts import LAYOUTS

    p = subparsers.add_parser("synth", help="build the built-in shallow-water dataset (no download)")
    p.add_argument("--preset", choices=["default", "tiny"], default="default", help="starting settings")
    p.add_argument("--out", type=Path, default=Path("data/swe.zarr"), help="store to write (default data/swe.zarr)")
    for name, typ, text in (
        ("nlat", int, "output latitudes (equiangular incl. poles, or gaussian)"),
        ("nlon", int, "output longitudes"),
        ("grid", str, "output grid: equiangular (default) or gaussian"),
        ("days", float, "simulated days per trajectory (after spin-up)"),
        ("trajectories", int, "independent trajectories"),
        ("groups", int, "batches the trajectories advance in (one random stream each)"),
        ("seed", int, "random seed (same seed => bitwise identical store)"),
        ("spinup-days", float, "discarded spin-up"),
        ("truncation", int, "internal spectral truncation T"),
        ("dt", float, "time step in seconds (must divide 6 h)"),
        ("start", str, "date of the first sample of trajectory 0"),
    ):
        p.add_argument(f"--{name}", type=typ, default=None, help=text)
    p.add_argument(
        "--workers",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="processes running the batches (default: 2 if there are 2 cores; the store does not depend on it)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing store")
    p.add_argument("--no-stats", action="store_true", help="skip writing the statistics file beside the store")
    p.set_defaults(func=cmd_synth)

    p = subparsers.add_parser("stats", help="normalisation statistics and climatology of a store")
    p.add_argument("store", type=Path)
    p.add_argument("--start", default=None, help="first time (inclusive), e.g. 2001-01-01")
    p.add_argument("--end", default=None, help="last time (inclusive)")
    p.add_argument(
        "--diff-hours",
        type=int,
        default=None,
        help="lag of the difference statistics (default: 6 h, or the data's time step if that is longer)",
    )
    p.add_argument(
        "--harmonics",
        type=int,
        default=3,
        help="seasonal harmonics of the climatology (default 3; fewer are fitted when the data cannot determine them)",
    )
    p.add_argument("--no-diurnal", action="store_true", help="no diurnal harmonic in the climatology")
    p.add_argument(
        "--memory",
        default="2GB",
        help="memory for the pass's arrays, e.g. 2GB (default): large stores are read in channel groups and "
        "time blocks that fit",
    )
    p.add_argument("--out", type=Path, default=None, help="output file (default STORE.stats.nc beside the store)")
    p.add_argument("--layout", choices=LAYOUTS, default=None, help="force the input layout")
    p.add_argument("--member", default=None, help="ensemble member of a multi-member source (its 'number')")
    p.set_defaults(func=cmd_stats)

    p = subparsers.add_parser("convert", help="any supported layout -> canonical zarr store")
    p.add_argument("src", type=Path, help="WB2 zarr, GRIB, CDS .nc/.zip/folder, makani folder, or canonical store")
    p.add_argument("--to", type=Path, required=True, help="target STORE.zarr")
    _source_options(p, LAYOUTS)
    p.add_argument("--overwrite", action="store_true", help="replace an existing store")
    p.set_defaults(func=cmd_convert)

    p = subparsers.add_parser("regrid", help="interpolate a dataset spectrally onto a grid the models accept")
    p.add_argument("src", type=Path, help="any supported input (e.g. a WeatherBench2 64x32 zarr) or store")
    p.add_argument(
        "--to", required=True, help="target grid: equiangular:NLATxNLON (with poles), gaussian:NLATxNLON, gaussian:N"
    )
    p.add_argument("--out", type=Path, required=True, help="new STORE.zarr")
    _source_options(p, LAYOUTS)
    p.add_argument("--overwrite", action="store_true", help="replace an existing store")
    p.set_defaults(func=cmd_regrid)

    p = subparsers.add_parser("check", help="validate a dataset and summarise layout, grid, times, NaNs")
    p.add_argument("path", type=Path)
    p.add_argument("--layout", choices=LAYOUTS, default=None, help="force the input layout")
    p.add_argument("--member", default=None, help="ensemble member to check (N or all) in a multi-member file")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_check)


def _source_options(p: argparse.ArgumentParser, layouts: tuple[str, ...]) -> None:
    p.add_argument("--channels", type=Path, default=None, help="dataset spec YAML (channels, static, start, end)")
    p.add_argument("--layout", choices=layouts, default=None, help="force the input layout")
    p.add_argument("--member", default=None, help="ensemble member (the 'number' of a CDS/GRIB file) to keep, or 'all'")
    p.add_argument(
        "--expver",
        default="merge",
        help="ERA5/ERA5T streams of old-CDS files: merge (default: first non-missing, as the CDS) or one, e.g. 1",
    )


def _open_selected(args: argparse.Namespace, allow_poleless: bool = False):
    """Open ``args.src`` with the member/expver choice and the spec's channels and time range applied."""
    import pandas as pd

    from sciml.errors import UsageError
    from sciml.forecasting.data.ecmwf import Selection, parse_member
    from sciml.forecasting.data.readers import open_source
    from sciml.forecasting.data.spec import load_spec

    spec = load_spec(args.channels) if args.channels else None
    sel = Selection(member=parse_member(args.member), expver=args.expver)
    src = open_source(args.src, args.layout, selection=sel, allow_poleless=allow_poleless)
    try:
        if spec is not None:
            src.select(spec.channels, spec.static)
            if spec.start or spec.end:
                lo = pd.Timestamp(spec.start) if spec.start else None
                hi = pd.Timestamp(spec.end) if spec.end else None
                parts = [p.sel(time=slice(lo, hi)) for p in src.parts]
                src.parts = [p for p in parts if p.sizes["time"]]
                if not src.parts:
                    raise UsageError(f"{args.src}: no time steps between {spec.start} and {spec.end}")
    except BaseException:
        src.close()
        raise
    return src


def _progress(args: argparse.Namespace):
    from sciml.progress import default_progress

    return default_progress(getattr(args, "quiet", False))


def cmd_synth(args: argparse.Namespace) -> int:
    from sciml.config import ConfigError
    from sciml.errors import UsageError
    from sciml.forecasting.data.stats import compute_stats, stats_path
    from sciml.forecasting.data.store import source_from_dataset, write_store
    from sciml.forecasting.data.swe import PRESETS, simulate

    changes = {
        k: getattr(args, k)
        for k in (
            "nlat",
            "nlon",
            "grid",
            "days",
            "trajectories",
            "groups",
            "seed",
            "spinup_days",
            "truncation",
            "dt",
            "start",
        )
        if getattr(args, k) is not None
    }
    if "trajectories" in changes and "groups" not in changes:  # fewer trajectories than the preset's groups
        changes["groups"] = min(PRESETS[args.preset].groups, changes["trajectories"])
    try:
        cfg = dataclasses.replace(PRESETS[args.preset], **changes)
    except ValueError as exc:
        raise ConfigError(f"sciml data synth: {exc}") from None
    if args.out.exists() and not args.overwrite:
        raise UsageError(f"{args.out} exists; pass --overwrite to replace it or choose another --out")
    t0 = time.monotonic()
    ds, _ = simulate(cfg, _progress(args), workers=args.workers)
    t_sim = time.monotonic() - t0
    src = source_from_dataset(ds, path=args.out)
    write_store(src, args.out, overwrite=args.overwrite, attrs={"swe_config": repr(cfg)})
    msg = f"wrote {args.out}: {ds.sizes['time']} steps x {len(ds.data_vars)} channels, {cfg.nlat}x{cfg.nlon}"
    if not args.no_stats:
        st = compute_stats(src)
        st.save(stats_path(args.out))
        msg += f"; statistics in {stats_path(args.out)}"
    print(f"{msg} (simulation {t_sim:.1f} s, total {time.monotonic() - t0:.1f} s)")
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    import pandas as pd

    from sciml.config import ConfigError
    from sciml.errors import reading
    from sciml.forecasting.data.ecmwf import Selection, parse_member
    from sciml.forecasting.data.readers import open_source
    from sciml.forecasting.data.stats import StatsConfig, compute_stats, stats_path
    from sciml.units import parse_bytes

    for flag, value in (("--start", args.start), ("--end", args.end)):
        if value is not None:
            with reading(f"{flag} {value!r}"):
                pd.Timestamp(value)
    try:
        cfg = StatsConfig(
            start=args.start,
            end=args.end,
            diff_hours=args.diff_hours,
            harmonics=args.harmonics,
            diurnal=not args.no_diurnal,
            memory_bytes=parse_bytes(args.memory),
        )
    except ValueError as exc:
        raise ConfigError(f"sciml data stats: {exc}") from None
    sel = Selection(member=parse_member(args.member))
    with reading(args.store), open_source(args.store, args.layout, selection=sel) as src:
        st = compute_stats(src, cfg, _progress(args))
    out = st.save(args.out or stats_path(args.store))
    width = max(len(c) for c in st.channels)
    print(f"{'channel':<{width}}  {'mean':>12} {'std':>12} {'diff_std':>12}")
    for i, c in enumerate(st.channels):
        print(f"{c:<{width}}  {st.mean[i]:12.5g} {st.std[i]:12.5g} {st.diff_std[i]:12.5g}")
    a = st.attrs or {}
    print(f"differences over {a.get('diff_hours'):g} h; climatology terms: {a.get('clim_terms')}")
    if a.get("clim_dropped", "none") != "none":
        print(f"not determined by these times, dropped: {a['clim_dropped']}")
    print(f"wrote {out}")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    import numpy as np

    from sciml.errors import UsageError
    from sciml.forecasting.data.store import write_store

    if args.to.exists() and not args.overwrite:
        raise UsageError(f"{args.to} exists; pass --overwrite to replace it or choose another --to")
    with _open_selected(args) as src:
        write_store(
            src, args.to, overwrite=args.overwrite, attrs={"converted_from": str(args.src)}, progress=_progress(args)
        )
        n = int(np.sum([p.sizes["time"] for p in src.parts]))
        print(f"wrote {args.to}: {n} time steps, channels {src.channels}, static {src.static_channels}")
    return 0


def cmd_regrid(args: argparse.Namespace) -> int:
    from sciml.errors import UsageError
    from sciml.forecasting.data.contract import grid_of
    from sciml.forecasting.data.regrid import SpectralRegridder, parse_target
    from sciml.forecasting.data.store import write_store

    target = parse_target(args.to)
    if args.out.exists() and not args.overwrite:
        raise UsageError(f"{args.out} exists; pass --overwrite to replace it or choose another --out")
    with _open_selected(args, allow_poleless=True) as src:
        grid = grid_of(src.parts[0], str(args.src), allow_poleless=True)
        regrid = SpectralRegridder(grid.lat, grid.nlon, target)
        attrs = {
            "converted_from": str(args.src),
            "regridded_from": grid.describe(),
            "regrid_method": f"spectral interpolation, degrees l < {regrid.lmax}",
        }
        write_store(
            src, args.out, overwrite=args.overwrite, attrs=attrs, progress=_progress(args), transform=regrid.dataset
        )
        print(
            f"wrote {args.out}: {grid.describe()} -> {target.describe()} (degrees l < {regrid.lmax}), "
            f"channels {src.channels}, static {src.static_channels}"
        )
    return 0


def _raw_time_order(path: Path, layout: str, expected_hours: float | None) -> None:
    """A canonical store's time axis as written must be strictly increasing on its recorded step.

    The readers sort times, so a store whose times were mis-encoded (older sciml, blocks of one step) would
    otherwise pass as an irregular but valid axis.
    """
    import numpy as np
    import pandas as pd

    from sciml.errors import UsageError
    from sciml.forecasting.data.readers import open_zarr

    if layout != "canonical":
        return
    with open_zarr(path) as ds:
        t = pd.DatetimeIndex(ds["time"].values).as_unit("ns")
    d = np.diff(t.asi8)
    if (d <= 0).any():
        i = int(np.argmax(d <= 0))
        raise UsageError(
            f"{path}: times are not strictly increasing as stored ({t[i]} then {t[i + 1]} at index {i + 1}); the "
            "store is corrupt (e.g. time units mis-encoded by an older sciml): convert it again from its source"
        )
    if expected_hours and d.size and int(d.min()) != int(round(expected_hours * 3600e9)):
        raise UsageError(
            f"{path}: the smallest time step is {pd.Timedelta(int(d.min()))} but the store was written with steps "
            f"of {expected_hours:g} h; the store is corrupt (e.g. time units mis-encoded by an older sciml): "
            "convert it again from its source"
        )


def check_report(path: Path, layout: str | None = None, member: str | None = None) -> dict:
    """The facts ``sciml data check`` prints (also used by tests)."""
    import pandas as pd

    from sciml.forecasting.data.contract import grid_of, time_step
    from sciml.forecasting.data.ecmwf import Selection, parse_member
    from sciml.forecasting.data.readers import open_source, source_segments
    from sciml.forecasting.data.store import nonfinite_counts

    with open_source(path, layout, selection=Selection(member=parse_member(member))) as src:
        grid = grid_of(src.parts[0], str(path))
        expected = src.parts[0].attrs.get("time_step_hours")
        _raw_time_order(path, src.layout, expected)
        times = src.times
        step, missing = time_step(times.values, where=str(path))
        bad = nonfinite_counts(src)
        nans = {c: d["nan"] for c, d in bad.items()}
        infs = {c: d["inf"] for c, d in bad.items()}
        return {
            "path": str(path),
            "layout": src.layout,
            "channels": src.channels,
            "static": src.static_channels,
            "grid": {"kind": grid.kind, "nlat": grid.nlat, "nlon": grid.nlon},
            "time": {
                "start": str(times[0]),
                "end": str(times[-1]),
                "steps": int(times.size),
                "step_hours": step / pd.Timedelta(hours=1),
                "missing_steps": missing,
                "segments": int(len(set(source_segments(src).tolist()))),
            },
            "nan_counts": nans,
            "nan_total": int(sum(nans.values())),
            "inf_counts": infs,
            "inf_total": int(sum(infs.values())),
            "nonfinite_times": {c: d["times"] for c, d in bad.items() if d["times"]},
        }


def cmd_check(args: argparse.Namespace) -> int:
    from sciml.errors import reading

    with reading(args.path):
        rep = check_report(args.path, args.layout, args.member)
    if args.json:
        print(json.dumps(rep))
        return 0
    t = rep["time"]
    g = rep["grid"]
    lines = [
        f"path      {rep['path']}",
        f"layout    {rep['layout']}",
        f"grid      {g['kind']} {g['nlat']}x{g['nlon']}",
        f"channels  {len(rep['channels'])}: {' '.join(rep['channels'])}",
        f"static    {' '.join(rep['static']) or '-'}",
        f"time      {t['start']} .. {t['end']}, {t['steps']} steps of {t['step_hours']:g} h, "
        f"{t['missing_steps']} missing, {t['segments']} segment(s)",
        f"NaN       {rep['nan_total']} in total"
        + (": " + ", ".join(f"{k}={v}" for k, v in rep["nan_counts"].items() if v) if rep["nan_total"] else ""),
        f"inf       {rep['inf_total']} in total"
        + (": " + ", ".join(f"{k}={v}" for k, v in rep["inf_counts"].items() if v) if rep["inf_total"] else ""),
    ]
    lines += [f"  {c:<8}first at {', '.join(ts)}" for c, ts in rep["nonfinite_times"].items()]
    sys.stdout.write("\n".join(lines) + "\n")
    return 0
