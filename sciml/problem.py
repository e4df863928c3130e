"""What a problem declares about itself, independent of how it is solved.

The registry, ``sciml list`` and ``sciml describe`` only need this metadata, so this module imports
nothing heavy (no DeepXDE, no torch). The PINN engine (:mod:`sciml.pinn`) builds on :class:`ProblemSpec`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from sciml.errors import UsageError


@dataclass(frozen=True)
class Parameter:
    """A scalar problem parameter with a default and a valid interval.

    Parameters
    ----------
    name
        Name used on the command line (``--param name=value``) and in outputs.
    default
        Default value.
    low, high
        Bounds of the valid interval (``-inf``/``inf`` for none).
    description
        One line: physical meaning and units.
    low_inclusive, high_inclusive
        Whether the bounds themselves are valid.
    integer
        Only integer values are valid (e.g. the Legendre degree ``l``).
    why
        Why the bounds are what they are, shown when a value is rejected.
    target_low, target_high
        The sub-interval where the problem's accuracy target (:attr:`ProblemSpec.accuracy_target`) is met by
        the default solve (``None``: the whole valid range). Values that are valid but outside it are solved,
        with a warning (:meth:`ProblemSpec.accuracy_warnings`).
    target_why
        Why the target is not expected outside ``[target_low, target_high]`` (shown in that warning).
    """

    name: str
    default: float
    low: float = -math.inf
    high: float = math.inf
    description: str = ""
    low_inclusive: bool = True
    high_inclusive: bool = True
    integer: bool = False
    why: str = ""
    target_low: float | None = None
    target_high: float | None = None
    target_why: str = ""

    def range_text(self) -> str:
        lo = "[" if self.low_inclusive and math.isfinite(self.low) else "("
        hi = "]" if self.high_inclusive and math.isfinite(self.high) else ")"
        kind = "integer in " if self.integer else ""
        return f"{kind}{lo}{_num(self.low)}, {_num(self.high)}{hi}"

    def target_text(self) -> str:
        """The interval where the accuracy target is met, e.g. ``[0, 20]`` ("" when it is the valid range)."""
        if self.target_low is None and self.target_high is None:
            return ""
        lo = self.low if self.target_low is None else self.target_low
        hi = self.high if self.target_high is None else self.target_high
        return f"[{_num(lo)}, {_num(hi)}]"

    def target_warning(self, value: float) -> str | None:
        """One line if a valid ``value`` lies outside the interval where the accuracy target is met, else None."""
        below = self.target_low is not None and value < self.target_low
        above = self.target_high is not None and value > self.target_high
        if not (below or above):
            return None
        reason = f": {self.target_why}" if self.target_why else ""
        return f"{self.name}={_num(value)} is outside {self.target_text()}, where the accuracy target is met{reason}"

    def validate(self, value: float) -> float:
        """Return ``value`` (as int for integer parameters) or raise :class:`UsageError`."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UsageError(f"parameter {self.name} must be a number, got {value!r}")
        if math.isnan(value):
            raise UsageError(f"parameter {self.name} is NaN; valid range {self.range_text()}")
        below = value < self.low or (value == self.low and not self.low_inclusive)
        above = value > self.high or (value == self.high and not self.high_inclusive)
        if below or above:
            reason = f" ({self.why})" if self.why else ""
            raise UsageError(f"parameter {self.name}={_num(value)} is out of range: valid {self.range_text()}{reason}")
        if self.integer:
            if not float(value).is_integer():
                raise UsageError(f"parameter {self.name} must be an integer, got {value}")
            return int(value)
        return float(value)

    def parse(self, text: str) -> float:
        """Parse a command-line value (``inf`` and fractions such as ``4/3`` are accepted)."""
        raw = text.strip()
        try:
            if "/" in raw:
                num, den = raw.split("/", 1)
                value = float(num) / float(den)
            else:
                value = float(raw)
        except (ValueError, ZeroDivisionError):
            raise UsageError(f"parameter {self.name}: cannot read {text!r} as a number") from None
        return self.validate(value)


def _num(x: float) -> str:
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:g}"


class ProblemSpec:
    """Metadata every registered problem provides (class attributes).

    Concrete problems live in ``problems/`` (installed as ``sciml.problems``) and are registered through the
    ``sciml.problems`` entry-point group. They are classes; the PINN engine instantiates them with the
    resolved parameters: ``Problem(**params)``.
    """

    name: ClassVar[str]
    aliases: ClassVar[tuple[str, ...]] = ()
    summary: ClassVar[str]
    equation: ClassVar[str]
    parameters: ClassVar[tuple[Parameter, ...]] = ()
    singular_points: ClassVar[str] = ""
    reference: ClassVar[str] = ""
    #: One line: what the default solve is expected to reach, e.g. "relative L2 error <= 1e-7 vs eval_legendre".
    accuracy_target: ClassVar[str] = ""

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> None:
        """Cross-parameter checks beyond the per-parameter ranges; raise :class:`UsageError`."""

    @classmethod
    def resolve_params(cls, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Defaults updated by ``overrides`` (strings are parsed), validated.

        Raises
        ------
        UsageError
            Unknown parameter name (with the valid names) or an invalid value.
        """
        declared = {p.name: p for p in cls.parameters}
        params: dict[str, Any] = {p.name: p.default for p in cls.parameters}
        for key, value in (overrides or {}).items():
            if key not in declared:
                valid = ", ".join(declared) or "none"
                raise UsageError(f"problem {cls.name!r} has no parameter {key!r} (valid: {valid})")
            p = declared[key]
            params[key] = p.parse(value) if isinstance(value, str) else p.validate(value)
        cls.check_params(params)
        return params

    @classmethod
    def accuracy_warnings(cls, params: Mapping[str, Any]) -> list[str]:
        """Why the accuracy target is not expected for these (valid, resolved) parameters; empty if it is.

        The default checks each parameter against its ``target_low``/``target_high``; problems override this
        (calling ``super()``) for conditions that involve several parameters.
        """
        out = []
        for p in cls.parameters:
            line = p.target_warning(params[p.name]) if p.name in params else None
            if line:
                out.append(line)
        return out

    @classmethod
    def describe(cls) -> str:
        """Multi-line human description used by ``sciml describe``."""
        lines = [f"{cls.name}: {cls.summary}"]
        if cls.aliases:
            lines.append(f"aliases: {', '.join(cls.aliases)}")
        lines += ["", "equation:", *("  " + ln for ln in cls.equation.strip().splitlines())]
        lines += ["", "parameters:"]
        if not cls.parameters:
            lines.append("  (none)")
        for p in cls.parameters:
            target = f"   target met for {p.target_text()}" if p.target_text() else ""
            lines.append(f"  {p.name} = {_num(p.default)}   valid {p.range_text()}{target}   {p.description}")
        if cls.accuracy_target:
            lines += ["", "accuracy target (default solve):", *("  " + ln for ln in cls.accuracy_target.splitlines())]
        if cls.singular_points:
            lines += ["", "singular points:", *("  " + ln for ln in cls.singular_points.strip().splitlines())]
        if cls.reference:
            lines += ["", "reference solution:", *("  " + ln for ln in cls.reference.strip().splitlines())]
        return "\n".join(lines)
