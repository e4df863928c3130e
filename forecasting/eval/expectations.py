r"""What a forecasting demo is expected to show, as data: criteria checked on a scores dataset.

A demo's :class:`Expectations` are a tuple of criteria, each an object that checks one property of the scores of
``sciml forecast score`` (:mod:`sciml.forecasting.eval.score`) on every channel and returns one :class:`TargetCheck`
per channel:

* :class:`BeatsBaseline`: the fair CRPS below a baseline's at every lead of a window,
  :math:`\mathrm{CRPS}(\tau) / \mathrm{CRPS}_\mathrm{base}(\tau) < 1`;
* :class:`NearBaseline`: the fair CRPS at most :math:`f` times a reference ensemble's at every lead of a window,
  :math:`\mathrm{CRPS}(\tau) / \mathrm{CRPS}_\mathrm{ref}(\tau) \le f` (the perfect-model ensemble is a bound to
  come close to, not a baseline to beat);
* :class:`SSRBand`: the spread-skill ratio in ``[low, high]`` at every lead of a window;
* :class:`SpectrumRatio`: the members' angular power within a factor :math:`f` of the truth's,
  :math:`1/f \le P_\mathrm{member}(l) / P_\mathrm{truth}(l) \le f`, for a band of degrees at one lead or every
  lead of a window (the planetary degrees at every lead, upper bound only, catch a drift of the large scales over
  the rollout).

Two sets ship: :data:`FULL` (the skill targets of ``sciml forecast demo --full``) and :data:`QUICK` (``sciml
forecast demo``: a pipeline that runs end to end in minutes and gives a sensible ensemble).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import xarray as xr

from sciml.errors import UsageError


@dataclass(frozen=True)
class TargetCheck:
    """One criterion on one channel: the measured range ``[low, high]`` and whether it passes."""

    channel: str
    target: str
    low: float
    high: float
    passed: bool
    where: str

    def line(self) -> str:
        """``z500   CRPS / persistence  max 0.501 over 6-120 h: PASS`` and the like."""
        verdict = "PASS" if self.passed else "FAIL"
        if self.target.startswith("CRPS / "):
            return f"{self.channel:<6} CRPS / {self.target[7:]:<20} max {self.high:.3f} {self.where}: {verdict}"
        if self.target.startswith("P_member"):
            return f"{self.channel:<6} {self.target} {self.where}: {self.low:.3f}..{self.high:.3f}: {verdict}"
        return f"{self.channel:<6} {self.target:<13} range {self.low:.3f}..{self.high:.3f} {self.where}: {verdict}"


class Criterion(Protocol):
    """One expectation: a sentence for the summary and a check per channel."""

    def describe(self) -> str: ...

    def check(self, scores: xr.Dataset, channel: str) -> TargetCheck | None: ...


def _window(scores: xr.Dataset, first_hours: float, last_hours: float) -> np.ndarray:
    """Mask of the leads in ``[first_hours, last_hours]``; a usage error if there is none."""
    h = scores["lead_hours"].values
    win = (h >= first_hours) & (h <= last_hours)
    if not win.any():
        raise UsageError(f"no lead time of the scores lies in {first_hours:g}-{last_hours:g} h")
    return win


def _span(scores: xr.Dataset, win: np.ndarray) -> str:
    h = scores["lead_hours"].values[win]
    return f"{h[0]:g}-{h[-1]:g} h"


def _crps_ratio_check(
    scores: xr.Dataset,
    channel: str,
    baseline: str,
    first_hours: float,
    last_hours: float,
    factor: float,
    strict: bool = False,
) -> TargetCheck | None:
    """CRPS over ``baseline``'s CRPS at every lead of the window: passes below ``factor`` (``strict``) or at most
    ``factor``; ``None`` where the scores lack that baseline."""
    win = _window(scores, first_hours, last_hours)
    s = scores.sel(channel=channel)
    key = f"crps_{baseline}"
    if key not in s:
        return None
    ratio = s["crps"].values[win] / s[key].values[win]
    passed = np.all(ratio < factor) if strict else np.all(ratio <= factor)
    where = f"over {_span(scores, win)}" + ("" if strict else f" (at most x{factor:g})")
    return TargetCheck(channel, f"CRPS / {baseline}", float(ratio.min()), float(ratio.max()), bool(passed), where)


@dataclass(frozen=True)
class BeatsBaseline:
    """Fair CRPS below the ``baseline`` CRPS (``persistence``, ``climatology``, ``climatology_ensemble``) at
    every lead from ``first_hours`` to ``last_hours``; no check where the scores lack that baseline."""

    baseline: str
    first_hours: float = 6.0
    last_hours: float = 120.0

    def describe(self) -> str:
        base = self.baseline.replace("_", " ")
        return f"CRPS below {base}'s at every lead {self.first_hours:g}-{self.last_hours:g} h"

    def check(self, scores: xr.Dataset, channel: str) -> TargetCheck | None:
        return _crps_ratio_check(scores, channel, self.baseline, self.first_hours, self.last_hours, 1.0, strict=True)


@dataclass(frozen=True)
class NearBaseline:
    """Fair CRPS at most ``factor`` times the ``baseline`` ensemble's (``physics``: the perfect-model ensemble) at
    every lead from ``first_hours`` to ``last_hours``, on ``channels`` (``None``: every channel); no check on
    other channels or where the scores lack that baseline."""

    baseline: str
    factor: float
    channels: tuple[str, ...] | None = None
    first_hours: float = 24.0
    last_hours: float = 120.0

    def describe(self) -> str:
        on = "" if self.channels is None else f" ({', '.join(self.channels)})"
        return (
            f"CRPS at most x{self.factor:g} the {self.baseline} ensemble's at every lead "
            f"{self.first_hours:g}-{self.last_hours:g} h{on}"
        )

    def check(self, scores: xr.Dataset, channel: str) -> TargetCheck | None:
        if self.channels is not None and channel not in self.channels:
            return None
        return _crps_ratio_check(scores, channel, self.baseline, self.first_hours, self.last_hours, self.factor)


@dataclass(frozen=True)
class SSRBand:
    """Spread-skill ratio ``key`` (``ssr`` or ``ssr_corrected``) in ``[low, high]`` at every lead of the window."""

    key: str = "ssr"
    low: float = 0.7
    high: float = 1.3
    first_hours: float = 24.0
    last_hours: float = 120.0

    def describe(self) -> str:
        return f"{self.key} in [{self.low:g}, {self.high:g}] at every lead {self.first_hours:g}-{self.last_hours:g} h"

    def check(self, scores: xr.Dataset, channel: str) -> TargetCheck | None:
        s = scores.sel(channel=channel)
        if self.key not in s:
            return None
        win = _window(scores, self.first_hours, self.last_hours)
        v = s[self.key].values[win]
        return TargetCheck(
            channel,
            self.key,
            float(v.min()),
            float(v.max()),
            bool(np.all((v >= self.low) & (v <= self.high))),
            f"at {_span(scores, win)}",
        )


@dataclass(frozen=True)
class SpectrumRatio:
    r"""Member power within a factor ``factor`` of the truth's for degrees ``l_min..l_max`` (``None``: half the
    scores' band limit) at the lead nearest ``last_hours`` or, with ``first_hours`` set, at every lead from
    ``first_hours`` to ``last_hours``: :math:`1/f \le P_\mathrm{member}(l)/P_\mathrm{truth}(l) \le f`."""

    factor: float = 2.0
    l_min: int = 1
    l_max: int | None = None
    last_hours: float = 120.0
    first_hours: float | None = None
    target: str = "P_member/P_truth"  # the check's name in the report lines
    name: str = ""  # what the band stands for in the summary, e.g. "no planetary-scale drift"
    excess_only: bool = False  # only the upper bound (a drift is an excess; deficits are checked elsewhere)

    def _degrees(self, scores: xr.Dataset) -> tuple[int, int]:
        return self.l_min, self.l_max if self.l_max is not None else scores.sizes["l"] // 2

    def describe(self) -> str:
        hi = "lmax/2" if self.l_max is None else str(self.l_max)
        when = (
            f"at {self.last_hours:g} h"
            if self.first_hours is None
            else (f"at every lead {self.first_hours:g}-{self.last_hours:g} h")
        )
        bound = f"at most x{self.factor:g}" if self.excess_only else f"within x{self.factor:g} of"
        text = f"member power {bound} the truth's for l = {self.l_min}-{hi} {when}"
        return f"{self.name}: {text}" if self.name else text

    def check(self, scores: xr.Dataset, channel: str) -> TargetCheck:
        h = scores["lead_hours"].values
        if self.first_hours is None:
            rows = np.zeros(h.size, dtype=bool)
            rows[int(np.argmin(np.abs(h - self.last_hours)))] = True
            when = f"at {h[rows][0]:g} h"
        else:
            rows = _window(scores, self.first_hours, self.last_hours)
            when = f"at {_span(scores, rows)}"
        lo, hi = self._degrees(scores)
        s = scores.sel(channel=channel)
        ls = slice(lo, hi + 1)
        r = s["psd_member"].values[rows, ls] / s["psd_truth"].values[rows, ls]
        return TargetCheck(
            channel,
            self.target,
            float(r.min()),
            float(r.max()),
            bool(np.all((r <= self.factor) & (self.excess_only | (r >= 1 / self.factor)))),
            f"{when}, l={lo}..{hi}",
        )


@dataclass(frozen=True)
class Expectations:
    """What one demo is for (``purpose``) and the criteria its scores must meet."""

    name: str
    purpose: str
    criteria: tuple[Criterion, ...]

    def checks(self, scores: xr.Dataset) -> list[TargetCheck]:
        """Every criterion on every channel (channel by channel, criteria in order)."""
        out = []
        for c in scores["channel"].values:
            for crit in self.criteria:
                chk = crit.check(scores, str(c))
                if chk is not None:
                    out.append(chk)
        return out

    def describe(self) -> str:
        """The expectations as text: a heading and one line per criterion."""
        head = f"{self.name} expectations ({self.purpose}):"
        return "\n".join([head, *(f"  - {c.describe()}" for c in self.criteria)])

    def report(self, scores: xr.Dataset) -> tuple[str, bool]:
        """The checks as text (one line per channel and criterion, PASS or FAIL, then a verdict) and whether all
        passed. Scores that none of the criteria can be checked on fail, with the reason as the text."""
        try:
            checks = self.checks(scores)
        except UsageError as e:
            return str(e), False
        missed = sum(not c.passed for c in checks)
        ok = bool(checks) and missed == 0
        verdict = (
            f"{self.name}: all {len(checks)} expectations met"
            if ok
            else f"{self.name}: {missed} of {len(checks)} expectations MISSED"
        )
        return "\n".join([*(c.line() for c in checks), verdict]), ok


#: The skill targets of the full demo (``sciml forecast demo --full``, ``make demo-forecast``): beat the three
#: simple baselines, stay within x1.30 (z500) and x1.08 (winds) of the perfect-model ensemble's CRPS from 1 to 5
#: days (its 48 cases give intervals of about +-0.03 on those ratios), a calibrated spread, weather-like members.
FULL = Expectations(
    name="full demo",
    purpose="skill targets of the year-long run",
    criteria=(
        BeatsBaseline("persistence"),
        BeatsBaseline("climatology"),
        BeatsBaseline("climatology_ensemble"),
        NearBaseline("physics", 1.30, ("z500",)),
        NearBaseline("physics", 1.08, ("u500", "v500")),
        SSRBand("ssr", 0.8, 1.2),
        SSRBand("ssr_corrected", 0.8, 1.2),
        SpectrumRatio(2.0),
    ),
)

#: The short demo (``sciml forecast demo``, ``make demo``): minutes of training on a month of data, 5 cases.
#: It checks that the pipeline learned the dynamics (beats persistence), that the ensemble is neither collapsed
#: nor blown up (a wider SSR band than the full demo's: 5 cases instead of 12, a month of training data), and
#: that members keep the truth's spectrum without a planetary-scale drift (an excess at l = 1-3 at any lead; the
#: truth's planetary power at one lead of 5 cases is too small and noisy to hold members to x1/3 there too).
QUICK = Expectations(
    name="quick demo",
    purpose="runs end to end in minutes and gives a sensible ensemble",
    criteria=(
        BeatsBaseline("persistence"),
        SSRBand("ssr", 0.6, 1.4),
        SpectrumRatio(3.0, 1, 16),
        SpectrumRatio(
            3.0, 1, 3, first_hours=6.0, target="planetary drift", name="no planetary-scale drift", excess_only=True
        ),
    ),
)


def acceptance_checks(scores: xr.Dataset, expectations: Expectations = FULL) -> list[TargetCheck]:
    """:meth:`Expectations.checks` of ``expectations`` (default: the full demo's skill targets)."""
    return expectations.checks(scores)


def acceptance_report(scores: xr.Dataset, expectations: Expectations = FULL) -> str:
    """:meth:`Expectations.report` of ``expectations`` as text (one line per check, then the verdict)."""
    return expectations.report(scores)[0]
