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

    def range_text(self) -> str:
        lo = "[" if self.low_inclusive and math.isfinite(self.low) else "("
        hi = "]" if self.high_inclusive and math.isfinite(self.high) else ")"
        kind = "integer in " if self.integer else ""
        return f"{kind}{lo}{_num(self.low)}, {_num(self.high)}{hi}"

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
            lines.append(f"  {p.name} = {_num(p.default)}   valid {p.range_text()}   {p.description}")
        if cls.singular_points:
            lines += ["", "singular points:", *("  " + ln for ln in cls.singular_points.strip().splitlines())]
        if cls.reference:
            lines += ["", "reference solution:", *("  " + ln for ln in cls.reference.strip().splitlines())]
        return "\n".join(lines)
