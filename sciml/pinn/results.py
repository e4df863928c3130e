"""Metrics, result files and the one-screen summary of a PINN solve.

A result directory holds ``solution.nc`` (xarray: coordinate ``x``; prediction, reference, pointwise error and
ODE residual per output/equation; parameters as attributes), ``metrics.json``, ``history.csv``,
``solution.png``, ``config.yaml`` and ``run.json``. Everything is written into a temporary directory that
replaces ``out`` only when complete (:func:`sciml.io.atomic_path`), so a failed run leaves nothing partial behind.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sciml.config import to_dict
from sciml.io import atomic_path, atomic_write_json, atomic_write_text
from sciml.pinn.train import SolveResult
from sciml.runinfo import RunInfo


def compute_metrics(result: SolveResult) -> dict[str, Any]:
    """Errors against the reference on the dense grid (with the singular points), residuals, timings.

    ``rel_l2`` is :math:`\\|y - y_{ref}\\|_2 / \\|y_{ref}\\|_2` over all outputs on ``eval_points`` uniform
    points plus every fixed singular point; ``max_abs`` the largest pointwise error.
    """
    problem, model = result.problem, result.model
    x = problem.eval_grid(result.config.eval_points)
    pred = model.predict(x)
    ref = problem.reference_solution(x)
    res = model.residual_on(x)
    metrics: dict[str, Any] = {
        "problem": problem.name,
        "params": dict(problem.params),
        "n_eval_points": int(len(x)),
    }
    if ref is not None:
        ref = np.asarray(ref, dtype=float).reshape(pred.shape)
        err = pred - ref
        metrics["rel_l2"] = float(np.linalg.norm(err) / max(float(np.linalg.norm(ref)), 1e-300))
        metrics["max_abs_error"] = float(np.max(np.abs(err)))
        for j, name in enumerate(problem.outputs):
            metrics[f"rel_l2[{name}]"] = float(
                np.linalg.norm(err[:, j]) / max(float(np.linalg.norm(ref[:, j])), 1e-300)
            )
    metrics["residual_rms"] = float(np.sqrt(np.mean(res**2)))
    metrics["residual_max"] = float(np.max(np.abs(res)))
    sing = {}
    u = model.unknown_values()
    for s in problem.singularities():
        xs = float(torch.as_tensor(s.x(u)).detach()) if callable(s.x) else float(s.x)  # u: trained parameters
        sing[s.term_name()] = {"x": xs, "residual": [float(v) for v in model.residual_on(np.array([xs]))[0]]}
    metrics["singular_points"] = sing
    metrics["unknowns"] = {k: float(v.detach()) for k, v in u.items()}
    if metrics["unknowns"]:
        metrics["unknowns_reference"] = problem.reference_unknowns()
    final = result.history[-1] if result.history else {}
    metrics["final_loss"] = final.get("loss", math.nan)
    metrics["final_term_losses"] = {n: final.get(f"L:{n}", math.nan) for n in result.terms}
    metrics["final_weights"] = dict(result.weights)
    metrics["weighting"] = result.weighting
    metrics["steps"] = dict(result.steps, total=sum(result.steps.values()))
    metrics["wall_time_s"] = result.timings.get("total", math.nan)
    metrics["cpu_time_s"] = result.timings.get("cpu", math.nan)  # wall time inflates on a shared machine
    metrics["timings_s"] = dict(result.timings)
    metrics["stop_reason"] = result.stop_reason
    metrics["steps_to_error"] = {f"{t:g}": steps_to_error(result.history, t) for t in (1e-3, 1e-5, 1e-7)}
    metrics["extra"] = {str(k): float(v) for k, v in problem.extra_metrics(x, pred).items()}
    note = getattr(problem, "reference_note", None)
    if note:
        metrics["reference_note"] = note
    return metrics


def steps_to_error(history: list[dict[str, Any]], threshold: float) -> int | None:
    """First recorded step whose relative L2 error is below ``threshold`` (None if never)."""
    for row in history:
        e = row.get("error", math.nan)
        if isinstance(e, float) and e == e and e <= threshold:
            return int(row["step"])
    return None


def solution_dataset(result: SolveResult) -> Any:
    """The solution on the dense grid as an ``xarray.Dataset``."""
    import xarray as xr

    problem, model = result.problem, result.model
    x = problem.eval_grid(result.config.eval_points)
    pred = model.predict(x)
    ref = problem.reference_solution(x)
    res = model.residual_on(x)
    data: dict[str, Any] = {}
    for j, name in enumerate(problem.outputs):
        data[name] = ("x", pred[:, j], {"long_name": f"PINN prediction of {name}"})
        if ref is not None:
            r = np.asarray(ref, dtype=float).reshape(pred.shape)[:, j]
            data[f"{name}_ref"] = ("x", r, {"long_name": f"reference {name}", "source": problem.reference})
            data[f"{name}_error"] = ("x", pred[:, j] - r, {"long_name": f"{name} - {name}_ref"})
    for i, eq in enumerate(problem.equations):
        data[f"residual_{eq}"] = ("x", res[:, i], {"long_name": f"ODE residual ({eq}), multiplied through"})
    attrs: dict[str, Any] = {"problem": problem.name, "equation": problem.equation, "title": problem.title()}
    for k, v in problem.params.items():
        attrs[f"param_{k}"] = v
    for k, v in model.unknown_values().items():
        attrs[f"unknown_{k}"] = float(v.detach())
    fixed = [float(s.x) for s in problem.singularities() if not callable(s.x)]
    attrs["singular_points"] = np.asarray(fixed, dtype=float)
    return xr.Dataset(data, coords={"x": ("x", x)}, attrs=attrs)


def history_csv(history: list[dict[str, Any]]) -> str:
    if not history:
        return ""
    keys: list[str] = []
    for row in history:
        keys += [k for k in row if k not in keys]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    w.writeheader()
    for row in history:
        w.writerow({k: (f"{v:.10e}" if isinstance(v, float) else v) for k, v in row.items()})
    return buf.getvalue()


def summary_text(result: SolveResult, metrics: dict[str, Any], out: Path | None = None) -> str:
    """The one-screen summary printed at the end of ``sciml solve``."""
    p = result.problem
    lines = [f"{p.title()}  --  {p.summary}"]
    steps = metrics["steps"]
    lines.append(
        f"  training   : {steps['adam']} Adam + {steps['lbfgs']} L-BFGS + {steps['lm']} Levenberg-Marquardt steps, "
        f"{metrics['wall_time_s']:.1f} s wall, {metrics['cpu_time_s']:.1f} s CPU ({metrics['stop_reason']})"
    )
    lines.append(f"  weighting  : {result.weighting}; final weights " + _fmt_map(metrics["final_weights"]))
    if "rel_l2" in metrics:
        lines.append(
            f"  accuracy   : rel. L2 {metrics['rel_l2']:.3e}, max |error| {metrics['max_abs_error']:.3e} "
            f"on {metrics['n_eval_points']} points (incl. singular points) vs {p.reference.split('(')[0].strip()}"
        )
    lines.append(f"  residual   : rms {metrics['residual_rms']:.3e}, max {metrics['residual_max']:.3e}")
    for name, info in metrics["singular_points"].items():
        vals = ", ".join(f"{v:.2e}" for v in info["residual"])
        lines.append(f"  {name:<11}: residual {vals}")
    if metrics["unknowns"]:
        ref = metrics.get("unknowns_reference", {})
        lines.append(
            "  unknowns   : "
            + ", ".join(
                f"{k} = {v:.8g}" + (f" (ref {ref[k]:.8g})" if k in ref else "") for k, v in metrics["unknowns"].items()
            )
        )
    lines.append("  loss terms : " + _fmt_map(metrics["final_term_losses"]))
    extra = list(metrics.get("extra", {}).items())
    for i in range(0, len(extra), 3):  # three per line keeps the summary on one screen
        head = "  targets    : " if i == 0 else " " * 15
        lines.append(head + ", ".join(f"{k} = {v:.6g}" for k, v in extra[i : i + 3]))
    if out is not None:
        lines.append(f"  written to : {out}/ (solution.nc, metrics.json, history.csv, solution.png, config.yaml)")
    return "\n".join(lines)


def _fmt_map(d: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in d.items())


def plot_extras(result: SolveResult, ds: Any) -> dict[str, Any]:
    """The problem's labelled markers and extra curves for :func:`sciml.plotting.pinn.plot_solution`."""
    problem = result.problem
    unknowns = {k: float(v.detach()) for k, v in result.model.unknown_values().items()}
    x = ds["x"].values
    pred = np.stack([ds[name].values for name in problem.outputs], axis=1)
    return {"markers": problem.plot_markers(unknowns), "curves": problem.extra_curves(x, pred)}


def write_results(result: SolveResult, out: str | Path, run_config: dict[str, Any], info: Any = None) -> dict[str, Any]:
    """Write the result directory atomically; returns the metrics.

    ``info`` (a :class:`sciml.runinfo.RunInfo` started before the solve) adds ``run.json`` (version, seed, wall
    time, platform); without it one is made here from the solve's own timings.
    """
    from sciml.config import dump_yaml
    from sciml.plotting.pinn import plot_solution

    out = Path(out)
    metrics = compute_metrics(result)
    ds = solution_dataset(result)
    with atomic_path(out, directory=True) as tmp:
        ds.to_netcdf(tmp / "solution.nc", engine="h5netcdf")
        atomic_write_json(tmp / "metrics.json", metrics)
        atomic_write_text(tmp / "history.csv", history_csv(result.history))
        atomic_write_text(tmp / "config.yaml", dump_yaml(to_dict(run_config)))
        if info is None:
            info = RunInfo(command="sciml solve", seed=getattr(result.config, "seed", None))
            info.started -= result.timings.get("total", 0.0)
        info.timings.update({k: float(v) for k, v in result.timings.items()})
        atomic_write_json(tmp / "run.json", info.as_dict())
        plot_solution(ds, tmp / "solution.png", metrics, **plot_extras(result, ds))
        for name, text in result.problem.result_files().items():
            atomic_write_text(tmp / name, text)
    return metrics
