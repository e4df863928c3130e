"""Cost and calibration of the perfect-model (physics) baseline on the full demo's cases.

    python bench/physics_baseline.py                      # data/swe.zarr, the full demo's 48 cases, 8 members
    python bench/physics_baseline.py --cases 4 --json runs/bench/physics_baseline.json   # a quick look

Runs :class:`sciml.forecasting.eval.physics.PhysicsEnsemble` from the initial times the full demo scores
(``forecasting/demo.py``, ``FULL_DEMO``) over 5 days and scores it against the truth with the metrics of
``sciml forecast score`` (fair CRPS, ensemble-mean RMSE, SSR and corrected SSR; the unforced deterministic run's
CRPS = MAE). A perfect-model ensemble is calibrated: the corrected SSR should be 1 within sampling error. Prints
a table and the wall/CPU seconds of the runs (what the physics baseline adds to the demo's scoring) and writes
JSON (default ``bench/results/physics_baseline.json``). Needs the full demo's store (``make demo-forecast``
builds it; or ``sciml data synth``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LEADS_H = (6, 24, 72, 120)


def main(argv: list[str] | None = None) -> int:
    import pandas as pd
    import torch
    import xarray as xr

    from sciml.forecasting.data.dataset import open_canonical
    from sciml.forecasting.demo import FULL_DEMO, demo_inits
    from sciml.forecasting.eval import metrics as M
    from sciml.forecasting.eval.physics import PhysicsEnsemble
    from sciml.forecasting.train import load_train_config
    from sciml.io import atomic_write_json

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", type=Path, default=ROOT / "data" / "swe.zarr")
    ap.add_argument("--cases", type=int, default=FULL_DEMO.n_inits, help="first N of the demo's initial times")
    ap.add_argument("--members", type=int, default=FULL_DEMO.members)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the demo uses runtime.threads = 2)")
    ap.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "physics_baseline.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = load_train_config(FULL_DEMO.config, {"data.store": str(args.store)})
    channels = list(cfg.data.channels)
    lead = pd.Timedelta(days=5)
    truth = open_canonical(args.store)
    inits = pd.DatetimeIndex(demo_inits(pd.DatetimeIndex(truth["time"].values), cfg.data.valid_start, FULL_DEMO, lead))
    inits = inits[: args.cases]
    t0, cpu0 = time.monotonic(), time.process_time()
    pe = PhysicsEnsemble(truth, inits, args.members, channels, seed=0, where=args.store)
    rows = []
    step = pd.Timedelta(hours=pe.cfg.step_hours)
    for k in range(1, int(lead / step) + 1):
        ens, det = pe.advance(k * step)
        if k * pe.cfg.step_hours not in LEADS_H:
            continue
        y = truth[channels].sel(time=inits + k * step).load()
        for j, c in enumerate(channels):
            yc = y[c].assign_coords(time=inits)
            fe = xr.DataArray(ens[:, :, j], dims=("time", "realization", "lat", "lon"), coords=yc.coords)
            fd = yc.copy(data=det[:, j])
            kw = {"mean_dims": ("time",)}
            rmse, spread = float(M.ensemble_mean_rmse(fe, yc, **kw)), float(M.spread(fe, **kw))
            rows.append(
                {
                    "channel": c,
                    "lead_hours": k * pe.cfg.step_hours,
                    "crps": float(M.crps(fe, yc, **kw)),
                    "crps_deterministic": float(M.spatial_mean(abs(fd - yc)).mean("time")),
                    "rmse": rmse,
                    "ssr": spread / rmse,
                    "ssr_corrected": spread / rmse * ((args.members + 1) / args.members) ** 0.5,
                }
            )
    wall, cpu = time.monotonic() - t0, time.process_time() - cpu0
    truth.close()
    runs = len(inits) * (args.members + 1)
    steps = int(lead.total_seconds() / pe.cfg.dt)
    out = {
        "store": _shown(args.store),
        "cases": len(inits),
        "members": args.members,
        "threads": args.threads,
        "first_init": str(inits[0]),
        "last_init": str(inits[-1]),
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
        "ms_per_run_step": round(1e3 * cpu / (runs * steps), 3),
        "rows": rows,
    }
    print(f"{'channel':<8} {'lead':>5} {'CRPS':>9} {'CRPS det':>9} {'RMSE':>9} {'SSR':>6} {'SSRc':>6}")
    for r in rows:
        print(
            f"{r['channel']:<8} {r['lead_hours']:>4g}h {r['crps']:>9.4g} {r['crps_deterministic']:>9.4g} "
            f"{r['rmse']:>9.4g} {r['ssr']:>6.3f} {r['ssr_corrected']:>6.3f}"
        )
    print(
        f"{len(inits)} cases x {args.members + 1} runs x {steps} steps: {wall:.0f} s wall, {cpu:.0f} CPU s "
        f"({out['ms_per_run_step']} ms per run and step, {args.threads} thread(s))"
    )
    atomic_write_json(args.json, out)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())


def _shown(path: Path) -> str:
    """``path`` relative to the repository when it is inside it (results must not name one machine's folders)."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return path.name
