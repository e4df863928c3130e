"""Peak memory of ``sciml data stats`` on an ERA5-sized store: 721 x 1440, 72 channels, 24 six-hourly steps.

    python bench/stats_memory.py                       # 2GB budget (default); bench/results/stats_memory.json
    python bench/stats_memory.py --memory 1GB --steps 24

Generates the store step by step (7.2 GB of float32 fields on disk, removed afterwards), then runs the statistics
in a child process and reads its peak resident memory (``VmHWM``). The target is under 4 GB; the statistics
process used to hold all channels of a 64-step block at once (10.8 GB for 6 steps of 72 channels).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

CHILD = """
import sys, time
from sciml.forecasting.data.readers import open_source
from sciml.forecasting.data.stats import StatsConfig, compute_stats, stats_blocking
from sciml.units import parse_bytes
cfg = StatsConfig(memory_bytes=parse_bytes(sys.argv[2]))
t0 = time.perf_counter()
with open_source(sys.argv[1]) as src:
    st = compute_stats(src, cfg)
hwm = next(l for l in open("/proc/self/status") if l.startswith("VmHWM"))  # this process's peak RSS, kB
print(time.perf_counter() - t0, *stats_blocking(len(st.channels), 721 * 1440, st.clim.shape[0], cfg), hwm.split()[1])
"""

WRITER = """
import sys
sys.path.insert(0, sys.argv[1])
from stats_memory import write_store
from pathlib import Path
print(write_store(Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])))
"""


def write_store(path: Path, channels: int, steps: int) -> float:
    """A canonical store of random fields, written one step at a time (bounded memory); returns its size in GB."""
    import numpy as np
    import pandas as pd
    import xarray as xr

    from sciml.forecasting.data.grid import Grid
    from sciml.forecasting.data.store import source_from_dataset
    from sciml.forecasting.data.store import write_store as write_canonical

    g = Grid("equiangular", 721, 1440)
    times = pd.date_range("2020-01-01", periods=steps, freq="6h")
    names = [f"c{i:02d}" for i in range(channels)]
    rng = np.random.default_rng(0)

    def step(i: int) -> xr.Dataset:
        data = {n: (("time", "lat", "lon"), rng.standard_normal((1, 721, 1440), dtype=np.float32)) for n in names}
        return xr.Dataset(data, coords={"time": times[i : i + 1], "lat": g.lat, "lon": g.lon})

    write_canonical(source_from_dataset(step(0)), path)
    attrs = xr.open_zarr(path, consolidated=False).attrs
    for i in range(1, steps):
        ds = step(i)
        ds.attrs = dict(attrs, time_step_hours=6.0)  # an append rewrites the group attributes
        ds.to_zarr(path, append_dim="time", zarr_format=3, consolidated=False)
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e9


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--channels", type=int, default=72)
    ap.add_argument("--steps", type=int, default=24)
    ap.add_argument("--memory", default="2GB", help="the statistics' memory budget (sciml data stats --memory)")
    ap.add_argument("--json", type=Path, default=Path("bench/results/stats_memory.json"))
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="stats-memory-"))
    try:
        # both steps in their own processes: the peak is read from the statistics process's own high-water mark
        # (a child's getrusage maximum would include its parent's memory at fork time)
        t0 = time.perf_counter()
        here, store = str(Path(__file__).resolve().parent), str(work / "era5.zarr")
        cmd = [sys.executable, "-c", WRITER, here, store, str(args.channels), str(args.steps)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            sys.stderr.write(proc.stderr)
            return 1
        size_gb = float(proc.stdout.split()[-1])
        write_s = time.perf_counter() - t0
        proc = subprocess.run([sys.executable, "-c", CHILD, store, args.memory], capture_output=True, text=True)
        if proc.returncode:
            sys.stderr.write(proc.stderr)
            return 1
        stats_s, group, block, hwm_kb = proc.stdout.split()
        peak_gb = int(hwm_kb) * 1024 / 1e9
    finally:
        shutil.rmtree(work, ignore_errors=True)
    row = {
        "grid": "721x1440",
        "channels": args.channels,
        "steps": args.steps,
        "store_gb": round(size_gb, 2),
        "memory_budget": args.memory,
        "channels_per_pass": int(group),
        "steps_per_block": int(block),
        "peak_rss_gb": round(peak_gb, 2),
        "stats_s": round(float(stats_s), 1),
        "write_s": round(write_s, 1),
        "target_gb": 4.0,
        "platform": platform.platform(),
    }
    head = (
        f"{'grid':>9} {'ch':>3} {'steps':>5} {'store GB':>8} {'budget':>6} {'ch/pass':>7} {'peak GB':>7} {'stats s':>7}"
    )
    print(head)
    print(
        f"{row['grid']:>9} {row['channels']:>3} {row['steps']:>5} {row['store_gb']:>8} {row['memory_budget']:>6} "
        f"{row['channels_per_pass']:>7} {row['peak_rss_gb']:>7} {row['stats_s']:>7}"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(row, indent=1) + "\n")
    print(f"wrote {args.json}")
    return 0 if peak_gb < row["target_gb"] else 1


if __name__ == "__main__":
    sys.exit(main())
