"""Command-line glue for ``sciml solve`` (argparse only at import time; DeepXDE is imported on use).

``sciml solve PROBLEM [--param k=v ...] [--out DIR] [--config FILE] [--weighting NAME] [--seed N]
[--steps N] [--lm-steps N] [--time-limit S] [--sweep KEY=START:STOP[:STEP] | KEY=V1,V2,...]``

Precedence of solver settings: engine defaults < the problem's ``solver_defaults`` < its ``resolution(params)`` <
``--config`` < flags (a sweep resolves them per member). A
``config.yaml`` written by a run (``{problem, params, solver}``) is accepted as ``--config``; its ``params`` apply
unless overridden by ``--param``.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sciml.errors import UsageError
from sciml.problem import ProblemSpec

LOGGER = logging.getLogger(__name__)


def add_solve_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``sciml solve`` besides the problem name and ``--param``."""
    parser.add_argument("--out", type=Path, default=None, help="result directory (default: runs/PROBLEM)")
    parser.add_argument("--config", type=Path, default=None, help="solver config YAML (keys of SolverConfig)")
    from sciml.pinn.weighting import WEIGHTINGS  # numpy only: no deepxde import

    parser.add_argument("--weighting", default=None, help=f"loss weighting scheme: {', '.join(WEIGHTINGS)}")
    parser.add_argument("--seed", type=int, default=None, help="random seed (network init, sampling)")
    parser.add_argument("--steps", type=int, default=None, help="Adam steps")
    parser.add_argument("--lbfgs-steps", type=int, default=None, help="L-BFGS iterations (0: skip)")
    parser.add_argument("--lm-steps", type=int, default=None, help="Levenberg-Marquardt iterations (0: skip)")
    parser.add_argument("--time-limit", type=float, default=None, help="stop training after this many seconds")
    parser.add_argument(
        "--sweep",
        action="append",
        default=None,
        metavar="KEY=START:STOP[:STEP]",
        help="solve a family: KEY=START:STOP[:STEP] (STOP included) or KEY=V1,V2,...",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing result (or sweep) in --out")
    parser.add_argument(
        "--resume", action="store_true", help="sweep: keep the members already solved with these settings"
    )


def parse_sweep(text: str, problem: type[ProblemSpec]) -> tuple[str, list[float]]:
    """``'l=0:8'`` -> ``('l', [0, 1, ..., 8])``; ``'c=0.5,1.5'`` -> ``('c', [0.5, 1.5])``."""
    key, sep, spec = text.partition("=")
    key, spec = key.strip(), spec.strip()
    if not sep or not key or not spec:
        raise UsageError(f"--sweep expects KEY=START:STOP[:STEP] or KEY=V1,V2,..., got {text!r}")
    names = [p.name for p in problem.parameters]
    if key not in names:
        raise UsageError(f"--sweep: problem {problem.name!r} has no parameter {key!r} (valid: {', '.join(names)})")
    try:
        parts = [float(s) for s in (spec.split(":") if ":" in spec else spec.split(",")) if s.strip()]
    except ValueError:
        raise UsageError(f"--sweep {text!r}: cannot read numbers (use KEY=0:8, KEY=0:1:0.25 or KEY=1,2,5)") from None
    if ":" in spec:
        if len(parts) not in (2, 3):
            raise UsageError(f"--sweep {text!r}: write KEY=START:STOP or KEY=START:STOP:STEP")
        start, stop = parts[0], parts[1]
        step = parts[2] if len(parts) == 3 else 1.0
        if step <= 0 or stop < start:
            raise UsageError(f"--sweep {text!r}: need START <= STOP and STEP > 0")
        n = int(math.floor((stop - start) / step + 1e-9)) + 1
        if n > 1000:
            raise UsageError(f"--sweep {text!r} has {n} values; at most 1000")
        values = [start + i * step for i in range(n)]
    else:
        values = parts
    if not values:
        raise UsageError(f"--sweep {text!r} gives no values")
    return key, values


def _members_done(out: Path) -> list[Path]:
    return [p.parent for p in out.glob("*=*/metrics.json")]


def _check_out(out: Path, *, overwrite: bool = False, resume: bool = False, sweep: bool = False) -> None:
    """Refuse an output directory that cannot be written, or that holds a result, before any work is done."""
    out = out.resolve()
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a directory")
    parent = out if out.exists() else out.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"--out {out}: {parent} is a file, not a directory")
    # Probe by creating (and removing) a directory: os.access() says yes to root even where nothing can be
    # created (read-only mounts, /proc), and the failure would then come only after the training.
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".sciml-probe-", dir=parent))
    except OSError:
        raise UsageError(f"--out {out}: cannot write to {parent} (choose a writable directory)") from None
    if resume and not sweep:
        raise UsageError("--resume applies to sweeps (--sweep); a single solve is redone with --overwrite")
    entries = [p for p in out.iterdir() if not p.name.startswith(".")] if out.exists() else []
    if not entries:
        return
    is_sweep = (out / "sweep.json").exists() or bool(_members_done(out))
    if (out / "metrics.json").exists():
        if not overwrite:
            raise UsageError(
                f"--out {out} already holds a result; pass --overwrite to replace it or choose another --out"
            )
        if sweep:
            raise UsageError(f"--out {out} holds a single result, not a sweep; choose another --out")
        return
    if is_sweep:
        if not sweep:
            raise UsageError(f"--out {out} holds a sweep; choose another --out for a single solve")
        if not (overwrite or resume):
            n = len(_members_done(out))
            raise UsageError(
                f"--out {out} holds a sweep ({n} member(s) solved); pass --resume to finish it, --overwrite to "
                "solve every member again, or choose another --out"
            )
        return
    raise UsageError(f"--out {out} is a non-empty directory that is not a sciml result; choose another --out")


def _flag_overrides(args: argparse.Namespace) -> dict[str, Any]:
    over: dict[str, Any] = {}
    if getattr(args, "weighting", None) is not None:
        from sciml.pinn.weighting import WEIGHTINGS

        if args.weighting not in WEIGHTINGS:
            raise UsageError(f"--weighting {args.weighting!r} is unknown (valid: {', '.join(WEIGHTINGS)})")
        over["weighting"] = {"scheme": args.weighting}
    if getattr(args, "seed", None) is not None:
        over["seed"] = args.seed
    for flag, key in (
        ("steps", ("adam", "steps")),
        ("lbfgs_steps", ("lbfgs", "max_iter")),
        ("lm_steps", ("lm", "max_iter")),
    ):
        value = getattr(args, flag, None)
        if value is not None:
            if value < 0:
                raise UsageError(f"--{flag.replace('_', '-')} must be >= 0, got {value}")
            over.setdefault(key[0], {})[key[1]] = value
    if getattr(args, "time_limit", None) is not None:
        if not args.time_limit > 0:
            raise UsageError(f"--time-limit must be > 0, got {args.time_limit}")
        over["time_limit_s"] = args.time_limit
    return over


def solver_config(
    problem: type[ProblemSpec],
    args: argparse.Namespace,
    file_layer: dict[str, Any] | None,
    params: Mapping[str, Any] | None = None,
) -> Any:
    """Resolve the solver config: defaults < problem defaults < ``resolution(params)`` < ``--config``
    (``file_layer``) < flags."""
    from sciml.pinn.config import build_config, problem_layers

    if file_layer and "solver" in file_layer:
        file_layer = file_layer["solver"]  # a config.yaml written by a previous run
    return build_config(*problem_layers(problem, params or {}), file_layer, _flag_overrides(args))


def _config_file(problem: type[ProblemSpec], args: argparse.Namespace) -> dict[str, Any] | None:
    """The ``--config`` mapping: solver settings, or a previous run's ``{problem, params, solver}``."""
    from sciml.config import load_yaml

    if getattr(args, "config", None) is None:
        return None
    data = load_yaml(args.config)
    if data is None:
        return None
    if not isinstance(data, dict):
        raise UsageError(f"config file {args.config} must hold a mapping of solver settings")
    run_keys = {"problem", "params", "solver"}
    if run_keys & set(data):  # a run's config.yaml: only these three keys, solver settings under `solver`
        unknown = sorted(set(map(str, data)) - run_keys)
        if unknown:
            raise UsageError(
                f"config file {args.config}: unknown key(s) {', '.join(unknown)}; a run config holds only problem, "
                "params and solver (solver settings go under solver:)"
            )
        data = {"solver": {}, **data}
    if "solver" in data:
        if not isinstance(data["solver"], dict):
            raise UsageError(f"config file {args.config}: 'solver' must be a mapping")
        name = data.get("problem", problem.name)
        if str(name).lower() != problem.name.lower():
            raise UsageError(f"config file {args.config} is for problem {name!r}, not {problem.name!r}")
    return data


def _run_config(problem: Any, cfg: Any) -> dict[str, Any]:
    from sciml.config import to_dict

    return {"problem": problem.name, "params": dict(problem.params), "solver": to_dict(cfg)}


def _solve_one(problem_cls: Any, params: Mapping[str, Any], cfg: Any, out: Path, quiet: bool) -> dict[str, Any]:
    from sciml.pinn.results import summary_text, write_results
    from sciml.pinn.train import solve
    from sciml.progress import default_progress
    from sciml.runinfo import RunInfo

    info = RunInfo(command="sciml solve", seed=getattr(cfg, "seed", None))
    problem = problem_cls(**params)
    # the step budget is an upper bound (the solve stops on its loss target) and LM steps cost more than Adam's
    result = solve(problem, cfg, progress=default_progress(quiet, eta=False))
    metrics = write_results(result, out, _run_config(problem, cfg), info)
    print(summary_text(result, metrics, out))
    return metrics


def run_solve(problem: type[ProblemSpec], overrides: Mapping[str, str], args: argparse.Namespace) -> int:
    """``sciml solve``: validate everything, then solve (one problem or a sweep) and write the results."""
    from sciml.pinn.problem import AbstractProblem

    if not (isinstance(problem, type) and issubclass(problem, AbstractProblem)):
        raise UsageError(f"problem {problem.name!r} is not a PINN problem (no sciml.pinn.problem.AbstractProblem)")
    file_layer = _config_file(problem, args)  # read and checked once: parameters here, solver settings below
    file_params = (file_layer or {}).get("params") or {}
    if not isinstance(file_params, dict):
        raise UsageError(f"config file {args.config}: 'params' must be a mapping")
    overrides = {**file_params, **overrides}  # a previous run's parameters, then --param
    params = problem.resolve_params(overrides)
    cfg = solver_config(problem, args, file_layer, params)
    out = args.out if args.out is not None else Path("runs") / problem.name
    sweeps = args.sweep or []
    if len(sweeps) > 1:
        raise UsageError(f"--sweep is given {len(sweeps)} times ({', '.join(sweeps)}); one sweep per run")
    overwrite, resume = bool(getattr(args, "overwrite", False)), bool(getattr(args, "resume", False))
    if sweeps:  # all valid before any work
        key, values = parse_sweep(sweeps[0], problem)
        if key in overrides:
            raise UsageError(f"--sweep {key} conflicts with --param {key}; give one of them")
        family = [problem.resolve_params({**overrides, key: v}) for v in values]
        cfgs = [solver_config(problem, args, file_layer, p) for p in family]  # the resolution depends on each member
    from sciml.runlock import run_lock

    _check_out(out, overwrite=overwrite, resume=resume, sweep=bool(sweeps))
    with run_lock(out, "sciml solve"):
        _check_out(out, overwrite=overwrite, resume=resume, sweep=bool(sweeps))  # again, now that it is ours
        quiet = bool(getattr(args, "quiet", False))
        if not sweeps:
            _solve_one(problem, params, cfg, out, quiet)
            return 0
        return run_sweep(problem, key, family, cfgs, out, quiet, resume=resume)


def _finished_member(problem: Any, params: Mapping[str, Any], cfg: Any, sub: Path) -> dict[str, Any] | None:
    """The metrics of a member already solved with the same parameters and settings (``--resume``), else None."""
    import json

    import yaml

    from sciml.config import dump_yaml, load_yaml

    if not (sub / "metrics.json").is_file():
        return None
    want = yaml.safe_load(dump_yaml(_run_config(problem(**params), cfg)))
    if load_yaml(sub / "config.yaml") != want:
        raise UsageError(
            f"sweep member {sub} was solved with other parameters or settings; pass --overwrite to solve the "
            "sweep again, or resume with the settings of its config.yaml"
        )
    return json.loads((sub / "metrics.json").read_text())


def run_sweep(
    problem: Any, key: str, family: list[dict[str, Any]], cfg: Any, out: Path, quiet: bool, resume: bool = False
) -> int:
    """Solve each member into ``out/KEY=VALUE/``; write ``sweep.csv``, ``sweep.json``, ``sweep.png`` (errors and
    times) and ``sweep_profiles.png`` (the family of solution profiles overlaid). ``cfg``: one solver config
    for all members, or a list with one per member.

    Each member directory appears whole or not at all, and ``sweep.json`` (``complete: false``) marks the folder
    as a sweep from the start, so a sweep killed half-way is finished by the same command with ``resume=True``
    (``--resume``): members already solved with the same settings are kept.
    """
    import xarray as xr

    from sciml.io import atomic_write_json, atomic_write_text
    from sciml.plotting.pinn import plot_sweep, plot_sweep_profiles

    out.mkdir(parents=True, exist_ok=True)
    plan = {"problem": problem.name, "sweep": key, "values": [p[key] for p in family], "complete": False}
    atomic_write_json(out / "sweep.json", plan)
    rows = []
    cfgs = cfg if isinstance(cfg, (list, tuple)) else [cfg] * len(family)
    for params, member_cfg in zip(family, cfgs, strict=True):
        value = params[key]
        sub = out / f"{key}={value:g}"
        m = _finished_member(problem, params, member_cfg, sub) if resume else None
        if m is not None:
            LOGGER.info("%s: solved already, kept (--resume)", sub)
        else:
            m = _solve_one(problem, params, member_cfg, sub, quiet)
        rows.append(
            {
                key: value,
                "rel_l2": m.get("rel_l2", math.nan),
                "max_abs_error": m.get("max_abs_error", math.nan),
                "residual_rms": m["residual_rms"],
                "wall_time_s": m["wall_time_s"],
                "steps": m["steps"]["total"],
                "dir": sub.name,
                **m.get("extra", {}),
            }
        )
    header = list(dict.fromkeys(h for r in rows for h in r))
    lines = [",".join(header)] + [",".join(str(r.get(h, math.nan)) for h in header) for r in rows]
    atomic_write_text(out / "sweep.csv", "\n".join(lines) + "\n")
    atomic_write_json(out / "sweep.json", {**plan, "complete": True, "rows": rows})
    plot_sweep(
        [r[key] for r in rows],
        [r["rel_l2"] for r in rows],
        [r["wall_time_s"] for r in rows],
        key,
        out / "sweep.png",
        f"{problem.name}: sweep over {key}",
    )
    members = []
    for r in rows:
        with xr.open_dataset(out / r["dir"] / "solution.nc", engine="h5netcdf") as ds:
            members.append((r[key], ds.load()))
    plot_sweep_profiles(members, key, out / "sweep_profiles.png", f"{problem.name}: family over {key}")
    print(f"\n{problem.name} sweep over {key}:")
    print(f"  {key:>8}  {'rel. L2':>10}  {'max|err|':>10}  {'time [s]':>8}  steps")
    for r in rows:
        print(
            f"  {r[key]:>8g}  {r['rel_l2']:>10.3e}  {r['max_abs_error']:>10.3e}  {r['wall_time_s']:>8.1f}  {r['steps']}"
        )
    print(f"  written to {out}/ (sweep.csv, sweep.json, sweep.png, sweep_profiles.png, one directory per value)")
    return 0
