"""A quick look at a dataset (``sciml plot data``): per channel a map and its angular power spectrum.

Any input the readers take (a canonical store, a GRIB or CDS file, a WeatherBench2 zarr) is plotted at one time:
the map on its latitude/longitude axes with a colour bar in the channel's units, and beside it
:math:`P(l)` (:func:`..spectra.angular_power_spectrum`, orthonormal harmonics, log-log) on the data's own
quadrature grid.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from sciml.errors import UsageError

from ..data.contract import grid_of
from ..data.ecmwf import Selection
from ..data.readers import Source, open_source
from .plots import _plt, _save
from .spectra import angular_power_spectrum


def _time_index(src: Source, time: str | None) -> tuple[int, int]:
    """(part, index in part) of ``time`` (default: the first time); errors give the available range."""
    if time is None:
        return 0, 0
    want = pd.Timestamp(time)
    for k, p in enumerate(src.parts):
        t = pd.DatetimeIndex(p["time"].values)
        hit = np.flatnonzero(t == want)
        if hit.size:
            return k, int(hit[0])
    times = src.times
    raise UsageError(f"{src.path}: no time {want}; it has {times.size} times {times[0]} .. {times[-1]}; fix --time")


def plot_data(
    path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    channels: list[str] | None = None,
    time: str | None = None,
    member: int | str | None = None,
    layout: str | None = None,
    fmt: str = "png",
) -> list[Path]:
    """Write ``<channel>.<fmt>`` (map + power spectrum) per channel into ``out_dir``; return the files."""
    plt = _plt()
    files = []
    with open_source(path, layout, selection=Selection(member=member)) as src:
        if channels:
            src.select(channels)
        grid = grid_of(src.parts[0], str(path))
        k, i = _time_index(src, time)
        step = src.parts[k].isel(time=i).load()
        when = pd.Timestamp(step["time"].values)
        lat, lon = step["lat"].values, step["lon"].values
        dlon = 360.0 / lon.size
        extent = [lon[0] - dlon / 2, lon[-1] + dlon / 2, lat[-1], lat[0]]
        for c in src.channels:
            field = step[c]
            note = ""
            if "member" in field.dims:
                note = f", member {int(field['member'].values[0])}"
                field = field.isel(member=0, drop=True)
            units = field.attrs.get("units", "")
            fig, (ax_map, ax_psd) = plt.subplots(1, 2, figsize=(12, 3.8), layout="constrained")
            im = ax_map.imshow(field.values, extent=extent, origin="upper", aspect="auto", cmap="viridis")
            fig.colorbar(im, ax=ax_map, label=f"{c} [{units}]", shrink=0.9)
            ax_map.set_xlabel("longitude [°E]")
            ax_map.set_ylabel("latitude [°N]")
            ax_map.set_title(f"{c}  {when:%Y-%m-%d %H:%M}{note}")
            psd = angular_power_spectrum(field.astype(np.float64), grid=grid.th_grid)
            l = psd["l"].values
            ax_psd.loglog(l[1:], psd.values[1:], "k-")
            ax_psd.set_xlabel("spherical harmonic degree l")
            ax_psd.set_ylabel(f"P(l) [({units})$^2$ sr]")
            ax_psd.set_title(f"angular power spectrum ({grid.describe()})")
            ax_psd.grid(alpha=0.3, which="both")
            files.append(_save(fig, Path(out_dir) / f"{c}.{fmt}"))
    return files
