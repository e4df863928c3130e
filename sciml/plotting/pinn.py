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


def plot_solution(ds: Any, path: str | Path, metrics: Mapping[str, Any] | None = None) -> Path:
    """Two rows per output: prediction and reference; |error| (log scale) with the ODE residual.

    Parameters
    ----------
    ds
        Dataset from :func:`sciml.pinn.results.solution_dataset`.
    path
        PNG file to write.
    metrics
        Optional metrics for the title (relative L2 error).
    """
    plt = _pyplot()
    x = ds["x"].values
    outputs = [v for v in ds.data_vars if not v.startswith("residual_") and not v.endswith(("_ref", "_error"))]
    sing = np.atleast_1d(ds.attrs.get("singular_points", []))
    fig, axes = plt.subplots(2, len(outputs), figsize=(6.5 * len(outputs), 6.5), squeeze=False, sharex=True)
    for j, name in enumerate(outputs):
        top, bottom = axes[0, j], axes[1, j]
        if f"{name}_ref" in ds:
            top.plot(x, ds[f"{name}_ref"].values, "k-", lw=3, alpha=0.35, label="reference")
        top.plot(x, ds[name].values, "C0--", lw=1.5, label="PINN")
        top.set_ylabel(name)
        top.legend(loc="best")
        if f"{name}_error" in ds:
            err = np.abs(ds[f"{name}_error"].values)
            bottom.semilogy(x, np.maximum(err, 1e-17), "C3-", lw=1, label="|error|")
        for var in ds.data_vars:
            if var.startswith("residual_"):
                bottom.semilogy(
                    x, np.maximum(np.abs(ds[var].values), 1e-17), "C2-", lw=0.8, alpha=0.7, label=f"|{var}|"
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
    fig.suptitle(title + "   (dotted: singular points)")
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
