"""The spec file: YAML -> frozen dataclass (:mod:`sciml.config`; unknown keys are errors).

Example::

    name: legendre
    equation: "(1 - x**2)*y'' - 2*x*y' + l*(l + 1)*y = 0"
    domain: [-1, 1]
    parameters: {l: 3}
    conditions: ["y(1) = 1"]
    regular_at: all
    reference: "legendre(l, x)"

Everything numerical (parsing the equations, the analysis) happens in :mod:`sciml.spec.symbolic` and
:mod:`sciml.spec.analysis`; this module only checks the shape of the file.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sciml.config import ConfigError, from_dict, load_yaml
from sciml.errors import UsageError

NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
BRANCHES = {"larger": 1, "smaller": -1}  # root of the L'Hôpital quadratic at a moving point -> sign in the relation


@dataclass(frozen=True)
class Spec:
    """A singular ODE (or first/second-order system) as a user writes it.

    Parameters
    ----------
    name
        Title of the outputs.
    equation, equations
        One equation (``"lhs = rhs"``, sympy syntax, derivatives as ``y'``, ``y''`` or ``y1``, ``y2``), or a list
        of them for a system in ``functions``. Exactly one of the two.
    functions
        Names of the unknown functions (default ``[y]``).
    variable
        Name of the independent variable (default ``x``).
    domain
        ``[a, b]``; numbers or expressions in the parameters.
    parameters
        Default values (``--param k=v`` overrides).
    definitions
        Named sub-expressions (in order; each may use the ones before), e.g. ``{a2: "gamma*K*rho**(gamma-1)/h"}``.
    conditions
        ``"y(a) = v"``, ``"y'(a) = v"``: value conditions become hard constraints, the others loss terms.
    regular_at
        ``all`` (every singular point in the closed domain), ``none``, or a list of points.
    unknowns
        Trainable constants with initial guesses (eigenvalues), usable in equations and conditions.
    reference
        Optional reference solution: an mpmath expression in the variable and parameters (one per function,
        as a mapping, for systems).
    moving
        Starting positions of moving singular points by label (``{s1: 40}``, or an expression in the parameters,
        ``{s1: "1 + (1 - 1/c)/3"}``; ``sciml analyze`` lists the labels); default: the middle of the domain.
    branch
        Which of the two solutions crossing a moving singular point to keep, by label: ``larger`` or ``smaller``
        root of the L'Hôpital quadratic for the highest derivative there (``{s1: larger}``: the accelerating,
        transonic Parker wind); ``sciml analyze`` lists both. Default: no choice (either branch may be trained).
    weight
        Optional positive weight :math:`w(x)` of the collocation residual (an expression in the variable and the
        parameters): the loss sees :math:`w R` with :math:`R` multiplied through. For equations whose terms all
        carry a high power of :math:`x - x_0` near a singular point (e.g. :math:`x^6`), a weight such as
        :math:`1/(x^6 + 0.1^6)` makes small residuals mean small errors there; it is never a division by a
        vanishing coefficient (:math:`w` must be finite and positive on the closed domain).
    trial
        Optional hand-made trial functions by function name, in the variable, ``N`` (the network's output for that
        function), parameters and unknowns: ``{y: "1 - x/2 - x**2/8 - x**3/16 + x**4*N/8"}`` builds known series
        terms in. Conditions on such a function are then loss terms (they should hold by construction).
    solver
        Optional solver settings (keys of :class:`sciml.pinn.config.SolverConfig`) this problem needs.
    """

    name: str
    domain: tuple[float | str, float | str]
    equation: str = ""
    equations: tuple[str, ...] = ()
    functions: tuple[str, ...] = ("y",)
    variable: str = "x"
    parameters: dict[str, float] = field(default_factory=dict)
    definitions: dict[str, str] = field(default_factory=dict)
    conditions: tuple[str, ...] = ()
    regular_at: str | tuple[float | str, ...] = "all"
    unknowns: dict[str, float] = field(default_factory=dict)
    reference: str | dict[str, str] = ""
    moving: dict[str, float | str] = field(default_factory=dict)
    branch: dict[str, str] = field(default_factory=dict)
    weight: str = ""
    trial: dict[str, str] = field(default_factory=dict)
    solver: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if bool(self.equation) == bool(self.equations):
            raise ValueError("give exactly one of 'equation' (one ODE) or 'equations' (a list, for a system)")
        if isinstance(self.regular_at, str) and self.regular_at not in ("all", "none"):
            raise ValueError(f"regular_at must be 'all', 'none' or a list of points, got {self.regular_at!r}")
        if not self.functions:
            raise ValueError("functions must name at least one unknown function")
        names = [self.variable, *self.functions, *self.parameters, *self.definitions, *self.unknowns]
        for n in names:
            if not NAME.match(str(n)):
                raise ValueError(f"{n!r} is not a valid name (letters, digits, _; starting with a letter)")
            if keyword.iskeyword(n):
                raise ValueError(f"{n!r} is a Python keyword and cannot be a name; rename it (e.g. {n}_)")
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(
                f"name(s) {', '.join(dup)} declared twice (variable, functions, parameters, "
                "definitions and unknowns must all differ)"
            )
        if len(self.eq_texts) != len(self.functions):
            raise ValueError(
                f"{len(self.eq_texts)} equation(s) for {len(self.functions)} function(s) "
                f"({', '.join(self.functions)}): give one equation per function"
            )
        if set(self.trial) - set(self.functions):
            raise ValueError(f"trial names unknown function(s) {sorted(set(self.trial) - set(self.functions))}")
        if self.trial and "N" in names:
            raise ValueError("N is the network output in trial expressions; rename the parameter or unknown N")
        bad = {k: v for k, v in self.branch.items() if v not in BRANCHES}
        if bad:
            k, v = next(iter(bad.items()))
            raise ValueError(f"branch of {k} must be one of {', '.join(BRANCHES)}, got {v!r}")
        if isinstance(self.reference, dict) and set(self.reference) != set(self.functions):
            raise ValueError(f"reference must give one expression per function ({', '.join(self.functions)})")

    @property
    def eq_texts(self) -> tuple[str, ...]:
        return (self.equation,) if self.equation else tuple(self.equations)


def load_spec(path: str | Path) -> Spec:
    """Read and validate a spec file (:class:`UsageError` naming the file and the key on any problem)."""
    path = Path(path)
    data = load_yaml(path)
    try:
        return from_dict(Spec, data)
    except ConfigError as exc:
        raise UsageError(f"{path}: {exc}") from None


def resolve_parameters(spec: Spec, overrides: Mapping[str, str | float]) -> dict[str, float]:
    """The spec's parameter defaults updated by ``--param`` overrides (strings parsed as numbers)."""
    params = dict(spec.parameters)
    for key, value in overrides.items():
        if key not in params:
            valid = ", ".join(params) or "none"
            raise UsageError(f"spec {spec.name!r} has no parameter {key!r} (valid: {valid})")
        params[key] = _number(key, value)
    return params


def _number(key: str, value: str | float) -> float:
    if not isinstance(value, str):
        return float(value)
    raw = value.strip()
    try:
        if "/" in raw:
            num, den = raw.split("/", 1)
            return float(num) / float(den)
        return float(raw)
    except (ValueError, ZeroDivisionError):
        raise UsageError(f"parameter {key}: cannot read {value!r} as a number") from None
