"""Cost of the built-in shallow-water dataset: simulation, store writing and statistics, per preset.

    python bench/data_synth.py                          # tiny preset, and the default preset shortened to 30 days
    python bench/data_synth.py --full --workers 2       # the real default (4 x 365 days at 64x128): minutes
    python bench/data_synth.py --json bench/data_synth.json

Prints a table and writes JSON. Runs with one torch thread (as the generator itself does).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")


def run(name: str, cfg, workdir: Path, workers: int) -> dict:
    from sciml.forecasting.data import compute_stats, simulate, source_from_dataset, stats_path, write_store

    t0 = time.perf_counter()
    c0 = time.process_time()
    ds, _ = simulate(cfg, workers=workers)
    t1 = time.perf_counter()
    store = workdir / f"{name}.zarr"
    src = source_from_dataset(ds)
    write_store(src, store)
    t2 = time.perf_counter()
    compute_stats(src).save(stats_path(store))
    t3 = time.perf_counter()
    size = sum(f.stat().st_size for f in store.rglob("*") if f.is_file())
    return {
        "case": name,
        "grid": f"{cfg.nlat}x{cfg.nlon}",
        "truncation": cfg.truncation,
        "dt_s": cfg.dt,
        "trajectories": cfg.trajectories,
        "groups": cfg.groups,
        "workers": min(workers, cfg.groups),
        "days": cfg.days,
        "spinup_days": cfg.spinup_days,
        "steps_stored": int(ds.sizes["time"]),
        "simulate_s": t1 - t0,
        "write_s": t2 - t1,
        "stats_s": t3 - t2,
        "total_s": t3 - t0,
        "cpu_s": time.process_time() - c0,
        "store_MB": size / 1e6,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--full", action="store_true", help="also run the full default preset (minutes)")
    ap.add_argument("--json", type=Path, default=Path("bench/data_synth.json"))
    ap.add_argument("--workers", type=int, default=1, help="worker processes for the batch groups")
    args = ap.parse_args()

    import torch

    from sciml.forecasting.data import PRESETS

    torch.set_num_threads(1)
    cases = [("tiny", PRESETS["tiny"]), ("default-30d", dataclasses.replace(PRESETS["default"], days=30))]
    if args.full:
        cases.append(("default", PRESETS["default"]))
    workdir = Path(tempfile.mkdtemp(prefix="sciml-bench-"))
    try:
        rows = [run(n, c, workdir, args.workers) for n, c in cases]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    cols = [
        "case",
        "grid",
        "trajectories",
        "days",
        "steps_stored",
        "simulate_s",
        "write_s",
        "stats_s",
        "total_s",
        "cpu_s",
        "store_MB",
    ]
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join(f"{r[c]:.1f}" if isinstance(r[c], float) else str(r[c]) for c in cols))
    out = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "loadavg": os.getloadavg()},
        "max_rss_MB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3,
        "results": rows,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
