"""PINN solution plots: solution vs reference, log-scale error, singular points marked; sweep summaries."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


def _outputs(ds: Any) -> list[str]:
    return [str(v) for v in ds.data_vars if not v.startswith("residual_") and not v.endswith(("_ref", "_error"))]


_MARKER_STYLES = ("--", "-.", ":", (0, (5, 1, 1, 1)))
_MARKER_COLORS = ("C1", "C5", "C6", "C8", "C9")


def _marker_style(k: int) -> tuple[str, Any]:
    return _MARKER_COLORS[k % len(_MARKER_COLORS)], _MARKER_STYLES[k % len(_MARKER_STYLES)]


def _marker_groups(markers: Mapping[str, float], span: float) -> list[tuple[float, list[str], str]]:
    """Markers closer than 1% of the x range share one text label (they would overprint each other)."""
    groups: list[tuple[float, list[str], str]] = []
    for k, (label, xm) in enumerate(markers.items()):
        for xg, labels, _ in groups:
            if abs(xm - xg) < 0.01 * span:
                labels.append(label)
                break
        else:
            groups.append((xm, [label], _marker_style(k)[0]))
    return groups


def plot_solution(
    ds: Any,
    path: str | Path,
    metrics: Mapping[str, Any] | None = None,
    markers: Mapping[str, float] | None = None,
    curves: Mapping[str, tuple[str, np.ndarray]] | None = None,
) -> Path:
    """Two rows per output: prediction and reference; |error| (log scale) with the ODE residual.

    Parameters
    ----------
    ds
        Dataset from :func:`sciml.pinn.results.solution_dataset`.
    path
        PNG file to write.
    metrics
        Optional metrics for the title (relative L2 error).
    markers
        Labelled vertical lines (label -> x) drawn on every panel, e.g. horizons or a sonic point
        (:meth:`sciml.pinn.problem.AbstractProblem.plot_markers`).
    curves
        Extra curves, label -> ``(output name, values on ds.x)``, drawn on that output's upper panel
        (:meth:`sciml.pinn.problem.AbstractProblem.extra_curves`).
    """
    plt = _pyplot()
    x = ds["x"].values
    outputs = _outputs(ds)
    sing = np.atleast_1d(ds.attrs.get("singular_points", []))
    markers = {str(k): float(v) for k, v in (markers or {}).items() if np.isfinite(v)}
    curves = dict(curves or {})
    for label, (panel, values) in curves.items():
        if panel not in outputs:
            raise ValueError(f"extra curve {label!r} is for output {panel!r}; outputs are {', '.join(outputs)}")
        if np.shape(values) != np.shape(x):
            raise ValueError(f"extra curve {label!r} has shape {np.shape(values)}, the grid {np.shape(x)}")
    width = max(6.5 * len(outputs), 9.0)  # room for the title with one output
    fig, axes = plt.subplots(2, len(outputs), figsize=(width, 7.0), squeeze=False, sharex=True)
    for j, name in enumerate(outputs):
        top, bottom = axes[0, j], axes[1, j]
        if f"{name}_ref" in ds:
            top.plot(x, ds[f"{name}_ref"].values, "k-", lw=3, alpha=0.35, label="reference")
        top.plot(x, ds[name].values, "C0--", lw=1.5, label="PINN")
        for k, (label, (panel, values)) in enumerate(curves.items()):
            if panel == name:
                top.plot(x, np.asarray(values, dtype=float), color=f"C{4 + k}", lw=1.5, label=label)
        for k, (label, xm) in enumerate(markers.items()):
            color, ls = _marker_style(k)
            for ax in (top, bottom):
                ax.axvline(xm, color=color, ls=ls, lw=1.2, label=label if ax is top else None)
        for xm, labels, color in _marker_groups(markers, float(np.ptp(x)) if len(x) else 1.0):
            top.annotate(
                " / ".join(labels),
                (xm, 1.0),
                xycoords=("data", "axes fraction"),
                xytext=(2, -4),
                textcoords="offset points",
                rotation=90,
                va="top",
                ha="left",
                fontsize=7,
                color=color,
            )
        top.set_ylabel(name)
        top.legend(loc="best", fontsize=8)
        if f"{name}_error" in ds:
            err = np.abs(ds[f"{name}_error"].values)
            bottom.semilogy(x, np.maximum(err, 1e-17), "C3-", lw=1, label="|error|")
        residuals = [var for var in ds.data_vars if var.startswith("residual_")]
        for i, var in enumerate(residuals):
            color = "C2" if i == 0 else f"C{6 + i}"  # one colour per equation
            bottom.semilogy(
                x, np.maximum(np.abs(ds[var].values), 1e-17), "-", color=color, lw=0.8, alpha=0.7, label=f"|{var}|"
            )
        bottom.set_xlabel("x")
        bottom.legend(loc="best")
        for ax in (top, bottom):
            for xs in sing:
                ax.axvline(float(xs), color="0.4", ls=":", lw=1)
            ax.grid(alpha=0.3)
    title = str(ds.attrs.get("title", ""))
    if metrics and "rel_l2" in metrics:
        title += f"   rel. L2 error {metrics['rel_l2']:.2e}"
    fig.suptitle(title + "\n(dotted grey: singular points)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_sweep_profiles(members: Sequence[tuple[float, Any]], param: str, path: str | Path, title: str) -> Path:
    """The family of a sweep in one figure: one panel per output, one colour per parameter value.

    Parameters
    ----------
    members
        ``(value, dataset)`` pairs, datasets as from :func:`sciml.pinn.results.solution_dataset`.
    param
        Swept parameter name (legend entries read ``param=value``).
    path, title
        PNG file to write and figure title.

    The prediction is solid and the reference (where present) dashed in the same colour.
    """
    if not members:
        raise ValueError("plot_sweep_profiles needs at least one member")
    plt = _pyplot()
    outputs = _outputs(members[0][1])
    fig, axes = plt.subplots(1, len(outputs), figsize=(max(6.5 * len(outputs), 9.0), 4.8), squeeze=False)
    cmap = plt.get_cmap("viridis")
    n = len(members)
    for i, (value, ds) in enumerate(members):
        color = cmap(i / max(n - 1, 1) * 0.9)
        x = ds["x"].values
        for j, name in enumerate(outputs):
            ax = axes[0, j]
            ax.plot(x, ds[name].values, "-", color=color, lw=1.6, label=f"{param}={value:g}")
            if f"{name}_ref" in ds:
                ax.plot(x, ds[f"{name}_ref"].values, "--", color=color, lw=1.2, alpha=0.9)
    for j, name in enumerate(outputs):
        ax = axes[0, j]
        ax.set_xlabel("x")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    fig.suptitle(f"{title}\n(solid: PINN, dashed: reference)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_sweep(
    values: Sequence[float], errors: Sequence[float], times: Sequence[float], param: str, path: str | Path, title: str
) -> Path:
    """Relative L2 error and wall time across a parameter sweep."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.semilogy(values, errors, "o-", label="rel. L2 error")
    ax.set_xlabel(param)
    ax.set_ylabel("relative L2 error")
    ax.grid(alpha=0.3)
    ax2 = ax.twinx()
    ax2.plot(values, times, "s--", color="C1", label="wall time [s]")
    ax2.set_ylabel("wall time [s]")
    fig.legend(loc="upper left")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
