"""Store round trip at ERA5 0.25 deg: 721 x 1440 x 16 channels, a few 6-hourly steps, written in one-step blocks.

    python bench/store_roundtrip.py                 # 3 steps (about 200 MB written)
    python bench/store_roundtrip.py --steps 5 --json bench/results/store_roundtrip.json

One step of 16 float32 channels at 721 x 1440 is 66 MB, above the 64 MB block size, so ``write_store`` appends one
step at a time: the case where an implicit time encoding read appended 6-hourly offsets back as days. Prints a
table (times exact, values exact, write and read times) and writes JSON; exits 1 if the round trip is not exact.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")


def main(argv: list[str] | None = None) -> int:
    import numpy as np
    import pandas as pd
    import xarray as xr

    from sciml.forecasting.data.grid import Grid
    from sciml.forecasting.data.readers import open_source
    from sciml.forecasting.data.store import source_from_dataset, write_store

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--channels", type=int, default=16)
    ap.add_argument("--json", type=Path, default=Path("bench/results/store_roundtrip.json"))
    args = ap.parse_args(argv)
    g = Grid("equiangular", 721, 1440)
    times = pd.date_range("2020-01-01", periods=args.steps, freq="6h")
    rng = np.random.default_rng(0)
    names = [f"t{50 * (i + 1)}" for i in range(args.channels)]
    data = {n: (("time", "lat", "lon"), rng.standard_normal((args.steps, 721, 1440), dtype=np.float32)) for n in names}
    truth = xr.Dataset(data, coords={"time": times, "lat": g.lat, "lon": g.lon})
    work = Path(tempfile.mkdtemp(prefix="store-roundtrip-"))
    try:
        t0 = time.perf_counter()
        path = write_store(source_from_dataset(truth), work / "era5.zarr")
        t1 = time.perf_counter()
        with open_source(path) as src:
            times_ok = bool(src.times.equals(pd.DatetimeIndex(times)))
            values_ok = all(np.array_equal(src.parts[0][n].values, truth[n].values) for n in names)
        t2 = time.perf_counter()
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    row = {
        "grid": "721x1440",
        "channels": args.channels,
        "steps": args.steps,
        "step_mb": 4 * 721 * 1440 * args.channels / 1e6,
        "times_exact": times_ok,
        "values_exact": values_ok,
        "write_s": round(t1 - t0, 2),
        "read_s": round(t2 - t1, 2),
        "store_mb": round(size / 1e6, 1),
        "platform": platform.platform(),
    }
    print(f"{'grid':>9} {'ch':>3} {'steps':>5} {'MB/step':>8} {'times':>6} {'values':>6} {'write s':>8} {'read s':>7}")
    print(
        f"{row['grid']:>9} {row['channels']:>3} {row['steps']:>5} {row['step_mb']:>8.1f} {str(times_ok):>6} "
        f"{str(values_ok):>6} {row['write_s']:>8} {row['read_s']:>7}"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(row, indent=2) + "\n")
    return 0 if times_ok and values_ok else 1


if __name__ == "__main__":
    sys.exit(main())
