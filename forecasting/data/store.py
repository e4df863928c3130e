"""Writing canonical zarr stores: one time step per chunk, written atomically.

A store is built under a temporary sibling name and renamed into place only after its last time step is
written (``sciml.io.atomic_path``), so a crash never leaves a half store under the final name. Conversion
streams part by part and ``time_block`` steps at a time, so memory stays bounded by one block.

Times are encoded explicitly as integer seconds since 1970-01-01 (:data:`TIME_ENCODING`): left to itself, xarray
picks the units from the first block it writes (``days since`` for a one-step block) and appended 6-hourly
offsets would then be read back as days.

Chunks are ``(1, lat_chunk, lon_chunk)``: one time step per chunk, and for large grids several spatial chunks
per step so that a rank reading its lat x lon tile decodes only the chunks that intersect the tile.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from sciml.errors import UsageError
from sciml.io import atomic_path
from sciml.progress import NoProgress, Progress

from .contract import time_step
from .readers import Source

LOGGER = logging.getLogger(__name__)
MAX_CHUNK = (181, 360)  # 721x1440 -> 4x4 spatial chunks of <= 260 kB each (float32)
BLOCK_BYTES = 64e6  # default bytes of float32 fields loaded and written per append
# Lossless whatever the first block holds: whole seconds as int64 (every supported layout is on whole seconds).
TIME_ENCODING = {"units": "seconds since 1970-01-01T00:00:00", "calendar": "proleptic_gregorian", "dtype": "int64"}


def spatial_chunks(nlat: int, nlon: int) -> tuple[int, int]:
    """Spatial chunk shape: the whole field up to 181x360, else ~equal blocks no larger than that."""
    return min(nlat, -(-nlat // -(-nlat // MAX_CHUNK[0]))), min(nlon, -(-nlon // -(-nlon // MAX_CHUNK[1])))


def _encoding(ds: xr.Dataset) -> dict:
    cl, cx = spatial_chunks(ds.sizes["lat"], ds.sizes["lon"])
    enc: dict[Hashable, dict[str, Any]] = {}
    for name, v in ds.data_vars.items():
        enc[name] = {"chunks": (*(1 for d in v.dims if d not in ("lat", "lon")), cl, cx)}
    if "time" in ds.coords:
        enc["time"] = dict(TIME_ENCODING)
    return enc


def _whole_seconds(block: xr.Dataset, where: Path) -> None:
    ns = pd.DatetimeIndex(block["time"].values).as_unit("ns").asi8
    if (ns % 1_000_000_000).any():
        raise UsageError(f"{where}: times with fractions of a second cannot be stored; round them to seconds first")


def write_store(
    src: Source,
    dest: str | os.PathLike[str],
    *,
    time_block: int | None = None,
    overwrite: bool = False,
    attrs: dict | None = None,
    progress: Progress | None = None,
    transform: Callable[[xr.Dataset], xr.Dataset] | None = None,
) -> Path:
    """Write ``src`` as a canonical zarr v3 store at ``dest`` (atomically).

    Parameters
    ----------
    src
        Canonical source (:func:`~.readers.open_source`, or :func:`source_from_dataset`).
    dest
        Target ``*.zarr`` folder.
    time_block
        Time steps loaded and written per append (bounds memory); default: about 64 MB of float32 per block.
    overwrite
        Replace an existing store (the old one stays intact until the new one is complete).
    attrs
        Extra global attributes (provenance).
    transform
        Applied to every loaded block (static fields merged into the first) before writing, e.g. a regridder.
    """
    dest = Path(dest)
    if dest.exists() and not overwrite:
        raise UsageError(f"{dest} exists; pass --overwrite to replace it or choose another --to")
    progress = progress or NoProgress()
    total = sum(p.sizes["time"] for p in src.parts)
    if time_block is None:
        p0 = src.parts[0]
        step_bytes = 4 * p0.sizes["lat"] * p0.sizes["lon"] * max(1, len(p0.data_vars))
        time_block = max(1, int(BLOCK_BYTES // step_bytes))
    progress.start(total, f"writing {dest.name}")
    first = True
    store_attrs: dict = {}
    try:
        with atomic_path(dest, directory=True) as tmp:
            for part in src.parts:
                n = part.sizes["time"]
                for i0 in range(0, n, time_block):
                    block = part.isel(time=slice(i0, min(n, i0 + time_block))).load()
                    _whole_seconds(block, dest)
                    if first and src.static is not None:
                        block = block.merge(src.static.load())
                    if transform is not None:
                        block = transform(block)
                    if first:
                        block.attrs.pop("sciml_file", None)
                        block.attrs.update(attrs or {})
                        block.attrs.update(sciml_contract="1", source_layout=src.layout, time_encoding="int64-seconds")
                        if total > 1:
                            step, _ = time_step(src.times.values, where=str(src.path))
                            block.attrs.update(time_step_hours=step / pd.Timedelta(hours=1))
                        # zarr lists variables alphabetically: keep the channel order explicitly
                        block.attrs.update(channels=list(src.channels), static_channels=list(src.static_channels))
                        block.to_zarr(tmp, mode="w", zarr_format=3, consolidated=False, encoding=_encoding(block))
                        store_attrs = dict(block.attrs)
                        first = False
                    else:
                        dyn = block[[k for k, v in block.data_vars.items() if "time" in v.dims]]
                        dyn.attrs = store_attrs  # an append rewrites the group attributes: keep the first part's
                        dyn.to_zarr(tmp, append_dim="time", zarr_format=3, consolidated=False)
                    progress.update(block.sizes["time"])
    finally:
        progress.close()
    LOGGER.info("wrote %s (%d time steps)", dest, total)
    return dest


def source_from_dataset(ds: xr.Dataset, layout: str = "canonical", path: str | os.PathLike[str] = "<memory>") -> Source:
    """Wrap an in-memory canonical dataset as a :class:`Source` (e.g. the shallow-water generator output)."""
    static = [k for k, v in ds.data_vars.items() if "time" not in v.dims]
    dyn = ds.drop_vars(static)
    return Source(layout, Path(path), [dyn], ds[static] if static else None)


def nonfinite_counts(src: Source, time_block: int = 64, max_times: int = 5) -> dict[str, dict]:
    """NaN and +-inf counts per channel (dynamic and static), streaming over time blocks.

    Returns ``{channel: {"nan": n, "inf": n, "times": [first max_times times holding either]}}``.
    """
    out: dict[str, dict] = {c: {"nan": 0, "inf": 0, "times": []} for c in src.channels}
    for part in src.parts:
        n = part.sizes["time"]
        times = pd.DatetimeIndex(part["time"].values)
        for i0 in range(0, n, time_block):
            block = part.isel(time=slice(i0, i0 + time_block))
            for c in src.channels:
                v = block[c].values
                nan, inf = np.isnan(v), np.isinf(v)
                out[c]["nan"] += int(nan.sum())
                out[c]["inf"] += int(inf.sum())
                bad = (nan | inf).any(axis=(1, 2))
                room = max_times - len(out[c]["times"])
                if room > 0 and bad.any():
                    out[c]["times"] += [str(t) for t in times[i0 : i0 + len(bad)][bad][:room]]
    if src.static is not None:
        for c in src.static_channels:
            v = src.static[c].values
            out[c] = {"nan": int(np.isnan(v).sum()), "inf": int(np.isinf(v).sum()), "times": []}
    return out


def nonfinite_message(where: object, counts: dict[str, dict]) -> str | None:
    """One line naming each channel with NaN/inf values, their counts and first times (None if all finite)."""
    bad = {c: d for c, d in counts.items() if d["nan"] or d["inf"]}
    if not bad:
        return None
    parts = []
    for c, d in bad.items():
        at = f" at {', '.join(d['times'])}{' ...' if d['times'] and d['nan'] + d['inf'] > len(d['times']) else ''}"
        parts.append(f"{c}: {d['nan']} NaN, {d['inf']} inf{at if d['times'] else ' (static field)'}")
    return f"{where}: non-finite values in {'; '.join(parts)}"
