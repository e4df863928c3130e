"""Benchmark: the gravitational PINN problems (khronon-bh, bondi) against their accuracy targets.

Part 1 solves every case at its default settings (the problem's ``solver_defaults``) and checks:

* khronon-bh, c in {1.5, 2, 3, 5, 10}: |y - y_ref| <= 1e-5 at x = 0.25, 0.5, 0.75, 1; sound and universal
  horizons (trained scalars) within 1e-3 of the classical solver; c = inf: within 1e-6 of the exact form;
* bondi on [20, 140.5]: max relative error of rho and v <= 1e-5, sonic point within 0.01 of r_c, flux spread
  <= 1e-5; on [2.1, 140.5]: the same with 1e-4;
* every default solve under 300 s.

Part 2 repeats khronon-bh (c = 2) and bondi with each loss-weighting strategy and several seeds.

    python bench/pinn_gravity.py                 # part 1 + part 2 (6 schemes x 2 seeds)
    python bench/pinn_gravity.py --part 1        # accuracy table only
    python bench/pinn_gravity.py --part 2 --seeds 3 --schemes fixed lra softadapt

Prints tables and writes JSON (``--json``, default ``bench/results/pinn_gravity.json``). On a shared machine
the CPU-time column is the stable one.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("DDE_BACKEND", "pytorch")

import torch  # noqa: E402

CASES = {
    "khronon-bh(c=1.5)": ("khronon-bh", {"c": 1.5}),
    "khronon-bh(c=2)": ("khronon-bh", {"c": 2.0}),
    "khronon-bh(c=3)": ("khronon-bh", {"c": 3.0}),
    "khronon-bh(c=5)": ("khronon-bh", {"c": 5.0}),
    "khronon-bh(c=10)": ("khronon-bh", {"c": 10.0}),
    "khronon-bh(c=inf)": ("khronon-bh", {"c": math.inf}),
    "bondi[20,140.5]": ("bondi", {}),
    "bondi[2.1,140.5]": ("bondi", {"r_in": 2.1}),
}
WEIGHTING_CASES = ("khronon-bh(c=2)", "bondi[20,140.5]")
SCHEMES = ("fixed", "lra", "gradnorm", "ntk", "softadapt", "relobralo")


def run_case(key: str, scheme: str | None = None, seed: int = 0) -> dict:
    """One default solve; returns the target metrics, pass/fail and timings."""
    from sciml.pinn.config import build_config
    from sciml.pinn.results import compute_metrics
    from sciml.pinn.train import solve
    from sciml.registry import Registry

    name, params = CASES[key]
    problem = Registry().get(name)(**params)
    over: dict = {"seed": seed}
    if scheme is not None:
        over["weighting"] = {"scheme": scheme}
    cfg = build_config(problem.solver_defaults, over)
    t0, c0 = time.monotonic(), time.process_time()
    res = solve(problem, cfg)
    wall, cpu = time.monotonic() - t0, time.process_time() - c0
    metrics = compute_metrics(res)
    m, u, ref = metrics["extra"], metrics["unknowns"], metrics["unknowns_reference"]
    row = {"case": key, "scheme": scheme or cfg.weighting.scheme, "seed": seed, "wall_s": wall, "cpu_s": cpu}
    row["steps"] = dict(res.steps)
    row["stop_reason"] = res.stop_reason
    row["metrics"] = m
    row["unknown_errors"] = {k: abs(u[k] - ref[k]) for k in u}
    if name == "khronon-bh":
        err = max(m[f"abs_error@x={xc:g}"] for xc in (0.25, 0.5, 0.75, 1.0))
        horizons = max(row["unknown_errors"].values())
        tol_y = 1e-6 if math.isinf(params["c"]) else 1e-5
        row["headline"] = {"max_err_check_points": err, "max_horizon_err": horizons}
        row["pass"] = bool(err <= tol_y and horizons <= 1e-3 and wall <= 300)
    else:
        err = max(m["max_rel_error_rho"], m["max_rel_error_v"])
        tol = 1e-4 if params.get("r_in", 20.0) < 20.0 else 1e-5
        row["headline"] = {"max_rel_err": err, "sonic_err": row["unknown_errors"]["r_s"], "flux": m["flux_spread"]}
        row["pass"] = bool(
            err <= tol and row["unknown_errors"]["r_s"] <= 0.01 and m["flux_spread"] <= tol and wall <= 300
        )
    return row


def _line(row: dict) -> str:
    h = row["headline"]
    vals = "  ".join(f"{k}={v:.2e}" for k, v in h.items())
    return (
        f"{row['case']:<19} {row['scheme']:<10} {row['seed']:>4} {row['wall_s']:>7.1f} {row['cpu_s']:>7.1f}  "
        f"{'PASS' if row['pass'] else 'fail'}  {vals}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--part", type=int, choices=(1, 2), default=None, help="run only part 1 or part 2")
    ap.add_argument("--cases", nargs="*", default=None, choices=list(CASES), help="part 1 cases (default: all)")
    ap.add_argument("--schemes", nargs="*", default=list(SCHEMES), choices=SCHEMES)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--first-seed", type=int, default=0, help="part 2 uses seeds first-seed ... first-seed+seeds-1")
    ap.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "pinn_gravity.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    rows: list[dict] = []
    head = f"{'case':<19} {'weighting':<10} {'seed':>4} {'wall s':>7} {'cpu s':>7}  pass  errors"
    if args.part in (None, 1):
        print("part 1: default settings vs the accuracy targets\n" + head + "\n" + "-" * len(head), flush=True)
        for key in args.cases or list(CASES):
            row = run_case(key)
            rows.append({"part": 1, **row})
            print(_line(row), flush=True)
    if args.part in (None, 2):
        print("\npart 2: loss-weighting strategies\n" + head + "\n" + "-" * len(head), flush=True)
        for key in WEIGHTING_CASES:
            for scheme in args.schemes:
                for seed in range(args.first_seed, args.first_seed + args.seeds):
                    row = run_case(key, scheme, seed)
                    rows.append({"part": 2, **row})
                    print(_line(row), flush=True)
    from sciml.io import atomic_write_json

    args.json.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.json, {"argv": sys.argv[1:] if argv is None else argv, "rows": rows})
    print(f"\nwritten to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
