"""Accuracy of the shipped spec files (``sciml solve --spec problems/*.yaml``) against their hand-written classes.

    python bench/spec_vs_class.py                      # every case, default solver settings of each
    python bench/spec_vs_class.py --only khronon-bh-c2        # one case: its row in the JSON is replaced
    python bench/spec_vs_class.py --only khronon-bh-c2 --spec-only   # the class's row kept from the JSON

Both sides run with the solver settings ``sciml solve`` would use (the class's ``solver_defaults``, the spec's
``solver:`` key) and the same seed; errors are against each side's own reference (the class's reference solver,
the spec's mpmath expression) and the spec's prediction also against the class's reference (the columns of the
table: a spec need not have a reference). Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]


def bondi_primitive(x, pred, params):
    """The bondi spec solves for logarithms (L, W): back to (rho, v) as in problems/bondi.yaml."""
    import numpy as np

    M, rho_b = params.get("M", 1.0), 0.00032419728102325894
    rho = rho_b * np.exp(pred[:, 0])
    w = np.sqrt(0.5 * M / x) * np.exp(pred[:, 1])
    return np.stack([rho, w / np.sqrt(1.0 - 2.0 * M / x + w * w)], axis=1)


CONVERT = {"bondi": bondi_primitive}
# case -> (spec file, registered problem, parameters of both, extra parameters of the spec only)
CASES = {
    "legendre-l3": ("legendre.yaml", "legendre", {"l": 3}, {}),
    "legendre-l8": ("legendre.yaml", "legendre", {"l": 8}, {}),
    "hypergeometric-terminating": ("hypergeometric.yaml", "hypergeometric", {"a": -2, "b": 1, "c": 1}, {}),
    "hypergeometric-0.5,0.3,1.5": (
        "hypergeometric.yaml",
        "hypergeometric",
        {"a": 0.5, "b": 0.3, "c": 1.5, "x_max": 0.9},
        {},
    ),
    "khronon-bh-c2": ("khronon_bh.yaml", "khronon-bh", {"c": 2.0}, {}),
    "khronon-bh-c5": ("khronon_bh.yaml", "khronon-bh", {"c": 5.0}, {}),
    "khronon-bh-c1.2": ("khronon_bh.yaml", "khronon-bh", {"c": 1.2}, {}),
    "bondi": ("bondi.yaml", "bondi", {}, {}),
}


def run(problem, params, reference=None, convert=None) -> dict:
    import torch

    from sciml.pinn.config import build_config
    from sciml.pinn.results import compute_metrics
    from sciml.pinn.train import solve

    torch.set_num_threads(1)
    cfg = build_config(problem.solver_defaults)
    t = time.perf_counter()
    result = solve(problem(**params), cfg)
    m = compute_metrics(result)
    out = {}
    if reference is not None:  # the registered class's reference on the spec's grid (specs may have none)
        import numpy as np

        x = result.problem.eval_grid(cfg.eval_points)
        ref = np.asarray(reference.reference_solution(x), dtype=float).reshape(len(x), -1)
        pred = result.model.predict(x)
        if convert is not None:
            pred = convert(x, pred, params)
        err = pred - ref
        out = {
            "rel_l2_vs_class_reference": float(np.linalg.norm(err) / np.linalg.norm(ref)),
            "max_abs_vs_class_reference": float(np.max(np.abs(err))),
        }
    return {
        **out,
        "rel_l2": m.get("rel_l2"),
        "max_abs_error": m.get("max_abs_error"),
        "unknowns": m["unknowns"],
        "unknowns_reference": m.get("unknowns_reference", {}),
        "cpu_s": m["cpu_time_s"],
        "wall_s": time.perf_counter() - t,
        "steps": m["steps"]["total"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", "--only", nargs="*", default=list(CASES), choices=list(CASES))
    ap.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "spec_vs_class.json")
    ap.add_argument("--spec-only", action="store_true", help="solve the specs only; keep the class rows of the JSON")
    args = ap.parse_args()
    import json

    old = {r["case"]: r for r in json.loads(args.json.read_text())["rows"]} if args.json.exists() else {}
    from sciml.registry import Registry
    from sciml.spec.format import load_spec
    from sciml.spec.problem import problem_class

    for name in args.cases:
        yaml_name, registered, params, spec_only = CASES[name]
        path = ROOT / "problems" / yaml_name
        if not path.exists():
            print(f"{name}: {path.name} missing, skipped")
            continue
        cls_type = Registry().get(registered)
        if args.spec_only and name not in old:
            raise SystemExit(f"--spec-only: {args.json} has no class row for {name}; run without --spec-only")
        cls = old[name]["class"] if args.spec_only else run(cls_type, params)
        spec = run(
            problem_class(load_spec(path)),
            {**params, **spec_only},
            reference=cls_type(**params),
            convert=CONVERT.get(registered),
        )
        old[name] = {"case": name, "params": params, "spec": spec, "class": cls}
        print(
            f"{name:<28} spec rel.L2 {spec['rel_l2_vs_class_reference']:.3e} "
            f"max {spec['max_abs_vs_class_reference']:.3e} ({spec['wall_s']:.0f} s)   "
            f"class rel.L2 {cls['rel_l2']:.3e} max {cls['max_abs_error']:.3e} ({cls['wall_s']:.0f} s)"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    from sciml.io import atomic_write_json

    atomic_write_json(args.json, {"rows": [old[c] for c in CASES if c in old]})  # other cases' rows kept
    print(f"written to {args.json}")


if __name__ == "__main__":
    main()
