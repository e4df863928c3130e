"""Cost and accuracy of `sciml data regrid` on WeatherBench2's pole-less grids.

    python bench/regrid.py                      # 64x32 and 128x64 (WB2) and 256x128 -> equiangular with poles
    python bench/regrid.py --json runs/bench/regrid.json

For each grid: set-up time (one least-squares operator per zonal wavenumber), time per regridded field, and the
largest relative error on fields with random coefficients on every spherical harmonic up to degree L-1 (inside the
band limit: exact up to rounding) and L+4 (outside: what aliasing costs). Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")


def run(nlat: int, fields: int = 50) -> dict:
    import numpy as np

    from sciml.forecasting.data.grid import Grid, longitudes, poleless_latitudes
    from sciml.forecasting.data.regrid import SpectralRegridder
    from sciml.forecasting.data.testing import random_harmonics

    nlon = 2 * nlat
    lat, lon = poleless_latitudes(nlat), longitudes(nlon)
    target = Grid("equiangular", nlat + 1, nlon)
    t0 = time.perf_counter()
    R = SpectralRegridder(lat, nlon, target)
    t1 = time.perf_counter()
    x = np.random.default_rng(0).standard_normal((fields, nlat, nlon))
    R(x)
    t2 = time.perf_counter()
    err = {}
    for name, degree in (("inside", R.lmax - 1), ("outside", R.lmax + 4)):
        f = random_harmonics(lat, lon, degree, seed=degree)
        e = random_harmonics(target.lat, target.lon, degree, seed=degree)
        err[name] = float(np.abs(R(f) - e).max() / np.abs(e).max())
    return {
        "grid": f"{nlon}x{nlat} pole-less",
        "target": target.describe(),
        "lmax": R.lmax,
        "setup_s": t1 - t0,
        "ms_per_field": 1e3 * (t2 - t1) / fields,
        "rel_err_degree_L-1": err["inside"],
        "rel_err_degree_L+4": err["outside"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", type=Path, default=Path("bench/regrid.json"))
    ap.add_argument("--nlat", default="32,64,128", help="pole-less latitudes (nlon = 2 nlat)")
    args = ap.parse_args()
    rows = [run(int(n)) for n in args.nlat.split(",")]
    cols = list(rows[0])
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join(f"{r[c]:.3g}" if isinstance(r[c], float) else str(r[c]) for c in cols))
    out = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version()}, "results": rows}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
