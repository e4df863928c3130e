"""Benchmark: loss-weighting strategies of the PINN engine, and two plain-DeepXDE baselines.

For each problem, each weighting strategy and each seed: final relative L2 error (2001 points incl. the
singular points), wall and CPU time, and the first recorded step with error <= 1e-3 and <= 1e-5. Baselines, as
plain DeepXDE would run them (``dde.data.PDE`` + ``dde.Model``, hard constraint, 64 points, [1, 32, 32, 1] tanh,
fixed weights): (A) Adam only, float32; (B) Adam then L-BFGS, float64.

    python bench/pinn_weighting.py                      # full: 3 problems x 6 schemes x 3 seeds + baselines
    python bench/pinn_weighting.py --quick              # reduced: legendre l=3 only, 1 baseline seed

Prints a table and writes JSON (``--json``, default ``bench/results/pinn_weighting.json``). Timings depend on the
machine's load: the CPU time column is the more stable one on a shared machine.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("DDE_BACKEND", "pytorch")

import numpy as np  # noqa: E402
import torch  # noqa: E402

PROBLEMS = {
    "legendre(l=3)": ("legendre", {"l": 3}),
    "hyp2f1(-2,1;1)": ("hypergeometric", {"a": -2, "b": 1, "c": 1}),
    "hyp2f1(0.5,0.3;1.5)": ("hypergeometric", {"a": 0.5, "b": 0.3, "c": 1.5}),
}
SCHEMES = ("fixed", "lra", "gradnorm", "ntk", "softadapt", "relobralo")


def _problem(key: str):
    from sciml.registry import Registry

    name, params = PROBLEMS[key]
    return Registry().get(name)(**params)


def run_engine(key: str, scheme: str, seed: int, time_limit: float, adam_steps: int, lm_steps: int) -> dict:
    from sciml.pinn.config import build_config
    from sciml.pinn.results import compute_metrics
    from sciml.pinn.train import solve

    problem = _problem(key)
    cfg = build_config(
        problem.solver_defaults,
        {
            "weighting": {"scheme": scheme},
            "seed": seed,
            "time_limit_s": time_limit,
            "adam": {"steps": adam_steps},
            "lm": {"max_iter": lm_steps},
            "history_every": 5,
        },
    )
    res = solve(problem, cfg)
    m = compute_metrics(res)
    print(
        f"  {key} {scheme} seed {seed}: rel. L2 {m['rel_l2']:.2e}, {m['steps']['total']} steps, "
        f"{m['cpu_time_s']:.1f} s CPU",
        file=sys.stderr,
        flush=True,
    )
    return {
        "rel_l2": m["rel_l2"],
        "wall_s": m["wall_time_s"],
        "cpu_s": m["cpu_time_s"],
        "steps": m["steps"]["total"],
        "to_1e-3": m["steps_to_error"]["0.001"],
        "to_1e-5": m["steps_to_error"]["1e-05"],
        "final_weights": m["final_weights"],
    }


def run_deepxde(key: str, seed: int, dtype: str, adam_steps: int, lbfgs: bool) -> dict:
    """Plain DeepXDE: PDE data with the problem's residual, hard constraint as output transform."""
    from sciml.pinn import _dde

    problem = _problem(key)
    dde = _dde.dde()
    _dde.seed_everything(seed)
    _dde.set_precision(dtype)
    a, b = problem.domain()
    geom = dde.geometry.Interval(a, b)

    class Sol:
        def __init__(self, x, y):
            self.x, self.y = x, y

        def __call__(self, c=0):
            return self.y[:, 0:1]

        def d(self, c=0, k=1):
            return dde.grad.jacobian(self.y, self.x, i=0, j=0) if k == 1 else dde.grad.hessian(self.y, self.x)

    def ode(x, y):
        return problem.residual(x, Sol(x, y), {})[0]

    x_eval = problem.eval_grid(2001)
    ref = problem.reference_solution(x_eval)
    data = dde.data.PDE(geom, ode, [], num_domain=62, num_boundary=2)
    net = dde.nn.FNN([1, 32, 32, 1], "tanh", "Glorot normal")
    net.apply_output_transform(lambda x, nn: problem.trial(x, nn, {}))
    model = dde.Model(data, net)
    hist: list[tuple[int, float]] = []

    def err() -> float:
        pred = model.predict(x_eval[:, None].astype(dtype))
        return float(np.linalg.norm(pred - ref) / np.linalg.norm(ref))

    class Track(dde.callbacks.Callback):
        def on_epoch_end(self):
            step = self.model.train_state.step
            if step % 5 == 0:
                hist.append((step, err()))

    t0, c0 = time.monotonic(), time.process_time()
    with contextlib.redirect_stdout(io.StringIO()):
        model.compile("adam", lr=1e-3)
        model.train(iterations=adam_steps, display_every=10**9, callbacks=[Track()], verbose=0)
        if lbfgs:
            model.compile("L-BFGS")
            model.train(display_every=10**9, callbacks=[Track()], verbose=0)
    wall, cpu = time.monotonic() - t0, time.process_time() - c0
    e = err()
    steps = int(model.train_state.step)
    hist.append((steps, e))

    def first(th: float):
        return next((s for s, v in hist if v <= th), None)

    return {"rel_l2": e, "wall_s": wall, "cpu_s": cpu, "steps": steps, "to_1e-3": first(1e-3), "to_1e-5": first(1e-5)}


def _agg(rows: list[dict]) -> dict:
    def med(k):
        vals = [r[k] for r in rows if r[k] is not None]
        return statistics.median(vals) if vals else None

    return {
        "rel_l2_median": med("rel_l2"),
        "rel_l2_max": max(r["rel_l2"] for r in rows),
        "wall_s_median": med("wall_s"),
        "cpu_s_median": med("cpu_s"),
        "steps_median": med("steps"),
        "to_1e-3_median": med("to_1e-3"),
        "to_1e-5_median": med("to_1e-5"),
        "reached_1e-5": sum(r["to_1e-5"] is not None for r in rows),
        "n": len(rows),
    }


def _fmt(v, f="{:.2e}") -> str:
    return "-" if v is None else f.format(v)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="legendre(l=3) only, 1 baseline seed")
    ap.add_argument("--problems", nargs="*", default=None, choices=list(PROBLEMS))
    ap.add_argument("--schemes", nargs="*", default=list(SCHEMES), choices=SCHEMES)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--time-limit", type=float, default=300.0, help="wall-clock safety limit per engine solve")
    ap.add_argument("--lm-steps", type=int, default=300, help="Levenberg-Marquardt steps (the solver default)")
    ap.add_argument("--adam-steps", type=int, default=200)
    ap.add_argument("--baseline-adam-steps", type=int, default=3000)
    ap.add_argument("--baseline-seeds", type=int, default=None, help="seeds for the DeepXDE baselines (quick: 1)")
    ap.add_argument("--no-baselines", action="store_true")
    ap.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "pinn_weighting.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    problems = args.problems or (["legendre(l=3)"] if args.quick else list(PROBLEMS))
    limit = args.time_limit
    lm_steps = args.lm_steps
    results: dict = {"settings": vars(args) | {"json": str(args.json), "time_limit": limit}, "rows": []}
    table = []
    for key in problems:
        runs = {}
        for scheme in args.schemes:
            runs[f"engine/{scheme}"] = [
                run_engine(key, scheme, s, limit, args.adam_steps, lm_steps) for s in range(args.seeds)
            ]
        if not args.no_baselines:
            n = args.baseline_adam_steps
            nb = args.baseline_seeds or (1 if args.quick else args.seeds)
            runs["deepxde/adam/float32"] = [run_deepxde(key, s, "float32", n, False) for s in range(nb)]
            runs["deepxde/adam+lbfgs/float64"] = [run_deepxde(key, s, "float64", n, True) for s in range(nb)]
        for method, rows in runs.items():
            agg = _agg(rows)
            results["rows"].append({"problem": key, "method": method, "runs": rows, **agg})
            table.append((key, method, agg))
            print(f"done {key} {method}: median rel. L2 {agg['rel_l2_median']:.2e}", file=sys.stderr, flush=True)
    head = f"{'problem':<22} {'method':<27} {'relL2 med':>9} {'relL2 max':>9} {'wall s':>7} {'cpu s':>7} "
    head += f"{'steps':>6} {'->1e-3':>6} {'->1e-5':>6} {'hit1e-5':>7}"
    print(head)
    print("-" * len(head))
    for key, method, a in table:
        print(
            f"{key:<22} {method:<27} {_fmt(a['rel_l2_median']):>9} {_fmt(a['rel_l2_max']):>9} "
            f"{_fmt(a['wall_s_median'], '{:.1f}'):>7} {_fmt(a['cpu_s_median'], '{:.1f}'):>7} "
            f"{_fmt(a['steps_median'], '{:.0f}'):>6} {_fmt(a['to_1e-3_median'], '{:.0f}'):>6} "
            f"{_fmt(a['to_1e-5_median'], '{:.0f}'):>6} {a['reached_1e-5']:>4}/{a['n']}"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    from sciml.io import atomic_write_json

    atomic_write_json(args.json, results)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
