"""Benchmark: do the built-in singular-ODE problems meet their accuracy target over their parameter ranges?

For each problem, a grid of a few values per parameter (one parameter varied at a time, the others at their
defaults) is solved with the *default* solver settings (the problem's ``solver_defaults`` and its
``resolution(params)`` hook, exactly what ``sciml solve`` does) and compared with the problem's reference:

* ``rel_l2``: relative L2 error on the engine's dense grid (2001 points plus the singular points);
* ``metric`` / ``target``: the quantity the problem's ``accuracy_target`` names, and its bound;
* ``in_target_range``: whether the parameters lie where the problem promises the target (no accuracy
  warning); a point outside is expected to warn, and ``pass`` there is informative only;
* wall and CPU seconds of the solve.

    OMP_NUM_THREADS=1 python bench/pinn_ranges.py                        # every problem, full grids
    OMP_NUM_THREADS=1 python bench/pinn_ranges.py --quick                # a few points per problem
    OMP_NUM_THREADS=1 python bench/pinn_ranges.py --problems legendre    # one problem
    python bench/pinn_ranges.py --rescore     # reprint the JSON, target ranges re-read from the problems
    python bench/pinn_ranges.py --shard 0/3 --json a.json ...; python bench/pinn_ranges.py --merge a.json b.json c.json

Prints a table and writes JSON (``--json``, default ``bench/results/pinn_ranges.json``; with
``--problems``, rows of other problems already in that file are kept). On a shared machine the CPU column
is the stable one.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("DDE_BACKEND", "pytorch")

import torch  # noqa: E402

INF = math.inf
NOTE = "measured on a shared 2-core machine: wall times include contention, CPU times less so"
# (problem, parameter, full grid, quick grid, other parameters); the rest stay at their defaults. b is not
# varied: the equation is symmetric in a and b.
GRIDS: list[tuple[str, str, list[float], list[float], dict]] = [
    ("legendre", "l", [*range(21), 30], [0, 5, 10, 15, 20], {}),
    ("hypergeometric", "a", [-20, -10, -6, -4, 4, 6], [-10, 4], {}),
    ("hypergeometric", "c", [0.1, 0.5, 3, 10, 20], [0.5, 10], {}),
    ("hypergeometric", "a", [-4, 2, 4], [], {"b": 0.3, "c": 1.5}),
    ("hypergeometric", "x_max", [0.5, 0.99], [0.99], {"a": 0.5, "b": 0.3, "c": 1.5}),
    ("khronon-bh", "c", [1.05, 1.2, 10, 30, INF], [1.2, 30], {}),
    ("khronon-bh", "x_max", [2.0], [], {"c": 10.0}),
    ("bondi", "gamma", [1.1, 5 / 3], [5 / 3], {}),
    ("bondi", "r_in", [2.1, 10.0], [2.1], {}),
    ("bondi", "r_out", [60.0, 1000.0], [], {}),
    ("bondi", "r_c", [25.0, 100.0], [], {}),
]


def target_of(name: str, params: dict) -> float:
    """The bound stated in the problem's ``accuracy_target``."""
    if name in ("legendre", "hypergeometric"):
        return 1e-7
    if name == "khronon-bh":
        return 1e-6 if params["c"] in (INF, "inf") else 1e-5
    if name == "bondi":
        return 1e-5
    raise KeyError(name)


def headline(name: str, params: dict, metrics: dict) -> tuple[str, float, float]:
    """The problem's accuracy-target quantity, its value and its bound."""
    m = metrics.get("extra", {})
    if name in ("legendre", "hypergeometric"):
        value, metric = metrics["rel_l2"], "rel_l2"
    elif name == "khronon-bh":
        value = max(m[f"abs_error@x={x:g}"] for x in (0.25, 0.5, 0.75, 1.0))
        metric = "max|y-y_ref| x=0.25..1"
    else:
        value, metric = max(m["max_rel_error_rho"], m["max_rel_error_v"]), "max rel. err rho, v"
    return metric, value, target_of(name, params)


def run_point(name: str, params: dict, time_limit: float) -> dict:
    from sciml.pinn.config import build_config, problem_layers
    from sciml.pinn.results import compute_metrics
    from sciml.pinn.train import solve
    from sciml.registry import Registry

    problem = Registry().get(name)(**params)
    warnings = _target_range(name, params)
    t0, c0 = time.monotonic(), time.process_time()
    # default settings (solver_defaults + resolution(params)); only the wall-clock safety limit is raised, so
    # that contention on a shared machine does not cut the training short
    res = solve(problem, build_config(*problem_layers(problem, problem.params), {"time_limit_s": time_limit}))
    wall, cpu = time.monotonic() - t0, time.process_time() - c0
    metrics = compute_metrics(res)
    metric, value, target = headline(name, problem.params, metrics)
    return {
        "problem": name,
        "params": _json_params(params),
        "rel_l2": metrics["rel_l2"],
        "metric": metric,
        "value": value,
        "target": target,
        "pass": bool(value <= target),
        "in_target_range": not warnings,
        "warnings": warnings,
        "wall_s": wall,
        "cpu_s": cpu,
        "steps": metrics["steps"],
        "hidden": list(res.config.network.hidden),
        "n_points": res.config.collocation.n_points,
        "stop_reason": res.stop_reason,
    }


def points(quick: bool, problems: list[str] | None) -> list[tuple[str, dict]]:
    """Every (problem, parameters) of the grid, in table order."""
    return [
        (name, {**base, key: value})
        for name, key, full, short, base in GRIDS
        if not problems or name in problems
        for value in (short if quick else full)
    ]


def _json_params(params: dict) -> dict:
    """Parameters as stored in the JSON (``inf`` as a string)."""
    return {k: ("inf" if isinstance(v, float) and math.isinf(v) else v) for k, v in params.items()}


def _target_range(name: str, params: dict) -> list[str]:
    from sciml.registry import Registry

    cls = Registry().get(name)
    return cls.accuracy_warnings(cls.resolve_params({k: (INF if v == "inf" else v) for k, v in params.items()}))


def rescore(path: Path) -> int:
    """Re-read the target ranges of the problems (they may have changed since the run) and reprint."""
    from sciml.io import atomic_write_json

    data = json.loads(path.read_text())
    for r in data["rows"]:
        r["target"] = target_of(r["problem"], r["params"])
        r["pass"] = bool(r["value"] <= r["target"])
        r["warnings"] = _target_range(r["problem"], r["params"])
        r["in_target_range"] = not r["warnings"]
        print(_line(r))
    atomic_write_json(path, data)
    bad = [r for r in data["rows"] if r["in_target_range"] and not r["pass"]]
    print(f"\n{len(data['rows'])} points, {len(bad)} in a target range that miss the target; rewritten {path}")
    return 1 if bad else 0


def markdown(rows: list[dict]) -> str:
    """One Markdown table per problem: parameters, rel. L2, target quantity, pass, in target range, seconds."""
    out = []
    for name in dict.fromkeys(r["problem"] for r in rows):
        sub = [r for r in rows if r["problem"] == name]
        out += [
            f"\n**{name}** (target: {sub[0]['metric']} <= {sub[0]['target']:g})\n",
            "| parameters | rel. L2 | target quantity | result | in target range | wall s | CPU s |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in sub:
            result = "pass" if r["pass"] else "**fail**" if r["in_target_range"] else "fail (warned)"
            out.append(
                f"| {_fmt_params(r['params'])} | {r['rel_l2']:.1e} | {r['value']:.1e} | {result} | "
                f"{'yes' if r['in_target_range'] else 'no: warns'} | {r['wall_s']:.0f} | {r['cpu_s']:.0f} |"
            )
    return "\n".join(out)


def _fmt_params(p: dict) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in p.items())


def _line(r: dict) -> str:
    flag = "PASS" if r["pass"] else ("fail" if r["in_target_range"] else "fail (warned)")
    return (
        f"{r['problem']:<15} {_fmt_params(r['params']):<14} {r['rel_l2']:>9.2e} {r['metric']:<22} "
        f"{r['value']:>9.2e} {r['target']:>7.0e}  {flag:<13} {r['wall_s']:>7.1f} {r['cpu_s']:>7.1f}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a few points per problem")
    ap.add_argument("--problems", nargs="*", default=None, help="subset of problems (default: all)")
    ap.add_argument(
        "--rescore", action="store_true", help="solve nothing: reprint the JSON with the current target ranges"
    )
    ap.add_argument("--time-limit", type=float, default=3600.0, help="wall-clock safety limit per solve [s]")
    ap.add_argument("--markdown", action="store_true", help="solve nothing: print the JSON as Markdown tables")
    ap.add_argument("--values", default=None, help="only these values of the varied parameter, e.g. 8,11,14")
    ap.add_argument("--shard", default=None, metavar="K/N", help="solve only every N-th point, starting at K")
    ap.add_argument("--merge", nargs="*", type=Path, default=None, help="solve nothing: merge these JSON files")
    ap.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "pinn_ranges.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    logging.getLogger("sciml").addHandler(logging.NullHandler())  # the warnings are recorded per row instead
    head = (
        f"{'problem':<15} {'parameters':<14} {'rel. L2':>9} {'target quantity':<22} {'value':>9} {'target':>7}  "
        f"{'result':<13} {'wall s':>7} {'cpu s':>7}"
    )
    if args.markdown:
        print(markdown(json.loads(args.json.read_text())["rows"]))
        return 0
    print(head + "\n" + "-" * len(head), flush=True)
    if args.merge:
        merged = [r for f in args.merge for r in json.loads(f.read_text())["rows"]]
        order = {json.dumps([n, _json_params(p)], sort_keys=True): i for i, (n, p) in enumerate(points(False, None))}
        merged.sort(key=lambda r: order.get(json.dumps([r["problem"], r["params"]], sort_keys=True), len(order)))
        from sciml.io import atomic_write_json

        atomic_write_json(
            args.json,
            {
                "argv": sys.argv[1:] if argv is None else argv,
                "sources": [json.loads(f.read_text()).get("argv") for f in args.merge],
                "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                "note": NOTE,
                "rows": merged,
            },
        )
        return rescore(args.json)
    if args.rescore:
        return rescore(args.json)
    todo = points(args.quick, args.problems)
    if args.values:
        wanted = {float(v) for v in args.values.split(",")}
        todo = [(n, p) for n, p in todo if float(list(p.values())[-1]) in wanted]
    if args.shard:
        k, n = (int(v) for v in args.shard.split("/"))
        todo = todo[k::n]
    from sciml.io import atomic_write_json

    kept = []
    if args.problems and args.json.exists():
        kept = [r for r in json.loads(args.json.read_text()).get("rows", []) if r["problem"] not in args.problems]
    args.json.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, params in todo:
        row = run_point(name, params, args.time_limit)
        rows.append(row)
        print(_line(row), flush=True)
        atomic_write_json(  # after every point: a long run that is stopped keeps what it measured
            args.json,
            {
                "argv": sys.argv[1:] if argv is None else argv,
                "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                "note": NOTE,
                "rows": kept + rows,
            },
        )
    bad = [r for r in rows if r["in_target_range"] and not r["pass"]]
    print(f"\n{len(rows)} points, {len(bad)} in a target range that miss the target; written to {args.json}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
