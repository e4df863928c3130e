r"""Bootstrap intervals over forecast cases for the ratio of the model's CRPS to a baseline's.

The cases (initial times) are the resampled units: scores of one case are correlated over the grid, and cases a
week apart are nearly independent. For per-case scores :math:`a_i` (model) and :math:`b_i` (baseline) of the
same :math:`n` cases, the ratio of the case means

.. math::

    R = \frac{\sum_i a_i}{\sum_i b_i}

is recomputed on ``resamples`` resamples of :math:`n` case indices drawn with replacement (the same indices for
both, so the pairing is kept), and the interval is the percentile interval
:math:`[R^*_{(1-\text{level})/2}, R^*_{(1+\text{level})/2}]` of the resampled ratios (Efron and Tibshirani,
*An Introduction to the Bootstrap*, 1993, ch. 13).

The per-case scores come from ``sciml forecast score`` (``crps_cases``, ``crps_<baseline>_cases``;
:mod:`sciml.forecasting.eval.score`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import xarray as xr

from sciml.errors import UsageError

#: Baselines of the ratio table, in column order (the perfect-model bound first).
RATIO_BASELINES = ("physics", "persistence", "climatology")


@dataclass(frozen=True)
class RatioInterval:
    """``value`` = ratio of the case means; ``[low, high]`` its bootstrap interval over ``n`` cases."""

    value: float
    low: float
    high: float
    n: int

    def text(self) -> str:
        """``1.234 [1.10, 1.38]``."""
        return f"{self.value:.3f} [{self.low:.2f}, {self.high:.2f}]"


def ratio_interval(
    a: np.ndarray, b: np.ndarray, resamples: int = 2000, level: float = 0.95, seed: int = 0
) -> RatioInterval:
    """Ratio ``sum(a) / sum(b)`` of paired per-case scores and its percentile bootstrap interval.

    Cases where either score is NaN (not verified) are left out.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise UsageError(f"per-case scores must be two 1-D arrays of the same length, got {a.shape} and {b.shape}")
    if not 0 < level < 1:
        raise UsageError(f"the interval level must be in (0, 1), got {level}")
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    n = a.size
    if n == 0:
        return RatioInterval(float("nan"), float("nan"), float("nan"), 0)
    idx = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    r = a[idx].sum(axis=1) / b[idx].sum(axis=1)
    lo, hi = np.quantile(r, [(1 - level) / 2, (1 + level) / 2])
    return RatioInterval(float(a.sum() / b.sum()), float(lo), float(hi), n)


def ratio_rows(
    scores: xr.Dataset,
    leads_hours: Sequence[float] | None = None,
    baselines: Sequence[str] = RATIO_BASELINES,
    resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> list[dict]:
    """Per channel and lead: the CRPS of the model and of each baseline the scores have, and the ratio
    model / baseline with its interval (``{"channel", "lead_hours", "n_cases", "crps", "crps_<b>",
    "ratio_<b>": [value, low, high]}``)."""
    if "crps_cases" not in scores:
        raise UsageError("the scores have no per-case CRPS (crps_cases); rescore with this version of sciml")
    have = [b for b in baselines if f"crps_{b}_cases" in scores]
    hours = scores["lead_hours"].values
    rows = []
    for c in scores["channel"].values:
        s = scores.sel(channel=c)
        for j, h in enumerate(hours):
            if leads_hours is not None and h not in leads_hours:
                continue
            a = s["crps_cases"].isel(prediction_timedelta=j).values
            row: dict = {"channel": str(c), "lead_hours": float(h), "crps": float(s["crps"].values[j])}
            for b in have:
                iv = ratio_interval(a, s[f"crps_{b}_cases"].isel(prediction_timedelta=j).values, resamples, level, seed)
                row["n_cases"] = iv.n
                row[f"crps_{b}"] = float(s[f"crps_{b}"].values[j])
                row[f"ratio_{b}"] = [iv.value, iv.low, iv.high]
            rows.append(row)
    return rows


def format_ratio_rows(rows: list[dict], level: float = 0.95) -> str:
    """The rows of :func:`ratio_rows` as a plain-text table (CRPS of model and baselines, ratios with intervals)."""
    if not rows:
        return ""
    bases = [k[len("ratio_") :] for k in rows[0] if k.startswith("ratio_")]
    head = f"{'channel':<8} {'lead':>5} {'cases':>5} {'CRPS':>9} " + " ".join(f"{b[:11]:>11}" for b in bases)
    head += "  " + "  ".join(f"{'CRPS / ' + b[:11]:<24}" for b in bases)
    lines = [f"CRPS ratios, {level:.0%} bootstrap intervals over cases:", head]
    for r in rows:
        iv = [RatioInterval(*_triple(r[f"ratio_{b}"]), r.get("n_cases", 0)).text() for b in bases]
        lines.append(
            f"{r['channel']:<8} {r['lead_hours']:>4g}h {r.get('n_cases', 0):>5d} {r['crps']:>9.4g} "
            + " ".join(f"{r[f'crps_{b}']:>11.4g}" for b in bases)
            + "  "
            + "  ".join(f"{t:<24}" for t in iv)
        )
    return "\n".join(lines)


def _triple(v: Sequence[float]) -> tuple[float, float, float]:
    """``(value, low, high)`` of a stored ratio row (a list once written to JSON)."""
    value, low, high = v
    return float(value), float(low), float(high)
