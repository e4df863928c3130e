r"""A PINN problem built from a spec: :func:`problem_class` returns an :class:`~sciml.pinn.problem.AbstractProblem`.

What the engine gets (see :mod:`sciml.spec.analysis` for where it comes from):

* **residual**: each equation multiplied through symbolically, translated to torch (:mod:`sciml.spec.totorch`);
* **trial function**: value conditions :math:`f(a_i) = v_i` are hard,
  :math:`f = \sum_i v_i \ell_i(x) + \prod_i \frac{x - a_i}{h} N_f(x)` (Lagrange basis :math:`\ell_i`,
  :math:`h` the half-width of the domain; a point at the right end contributes :math:`(b - x)/h`, so that every
  factor is positive inside); the values may contain trainable unknowns;
* **soft conditions** (derivatives, combinations) as loss terms named by their text;
* **regularity**: one ``regularity@...`` term per requested fixed singular point (the residual there) and, per
  moving singular point, a trainable location ``x_sK`` with the regular-crossing terms;
* **unknowns** of the spec trained with the network;
* **reference** (optional): evaluated point by point with mpmath at 30 digits.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import sympy

from sciml.errors import UsageError
from sciml.pinn.problem import AbstractProblem, Condition, Singularity, Unknown
from sciml.problem import Parameter
from sciml.spec.analysis import Analysis, analyze
from sciml.spec.format import Spec
from sciml.spec.symbolic import at_name, deriv_name, parse_system
from sciml.spec.totorch import compile_expr


class SpecProblem(AbstractProblem):
    """Base of the classes :func:`problem_class` makes; one subclass per spec file."""

    spec: ClassVar[Spec]
    _analyses: ClassVar[dict[tuple, Analysis]]

    @classmethod
    def analysis_for(cls, params: Mapping[str, Any]) -> Analysis:
        """Parse and analyse with these parameters (cached; raises :class:`UsageError` before any training)."""
        key = tuple(sorted((k, float(v)) for k, v in params.items()))
        if key not in cls._analyses:
            analysis = analyze(parse_system(cls.spec, dict(key)))
            if cls.spec.reference:
                _check_reference(cls.spec, dict(key), analysis.system.domain)
            cls._analyses[key] = analysis
        return cls._analyses[key]

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> None:
        cls.analysis_for(params)

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.analysis = self.analysis_for(self.params)
        system = self.analysis.system
        self._var = self.spec.variable
        self._residuals = [compile_expr(r) for r in system.residuals]
        self._weight = None if system.weight is None else compile_expr(system.weight)
        self._needs = sorted(
            {
                (f, k)
                for r in system.residuals
                for f in system.functions
                for k in range(3)
                if sympy.Symbol(deriv_name(f, k)) in r.free_symbols
            }
        )
        self._hard: dict[str, list[tuple[float, Any]]] = {f: [] for f in system.functions}
        self._soft: list = []
        self._trials = {f: compile_expr(e) for f, e in (system.trials or {}).items()}
        for c in system.conditions:
            if c.hard is not None and c.hard[0] in self._trials:
                self._soft.append(c)  # the hand-made trial function should satisfy it: kept as a check
            elif c.hard is not None and all(abs(p - c.point) > 1e-12 for p, _ in self._hard[c.hard[0]]):
                self._hard[c.hard[0]].append((c.point, compile_expr(c.hard[1])))
            else:
                self._soft.append(c)
        a, b = system.domain
        self._h, self._b = 0.5 * (b - a), b
        # Taylor terms forced through multiple roots at a singular point (sciml.spec.series): built in
        self._series = {
            p.series.function: (
                float(p.series.point),
                p.series.order,
                compile_expr(p.series.expr(system.var)),
                p.series.scale,
            )
            for p in self.analysis.points
            if p.series is not None and p.series.function not in self._trials
        }

    # -- the ODE ------------------------------------------------------------------------------------------
    def domain(self) -> tuple[float, float]:
        return self.analysis.system.domain

    def _env(self, x, y, u) -> dict[str, Any]:
        env: dict[str, Any] = {self._var: x, **u}
        for f, k in self._needs:
            env[deriv_name(f, k)] = y(f) if k == 0 else y.d(f, k)
        return env

    def residual(self, x, y, u):
        env = self._env(x, y, u)
        if self._weight is None:
            return tuple(r(env) for r in self._residuals)
        w = self._weight(env)
        return tuple(w * r(env) for r in self._residuals)

    def trial(self, x, nn, u):
        import torch

        cols = []
        for c, f in enumerate(self.outputs):
            pts = self._hard[f]
            net = nn[:, c : c + 1]
            if f in self._trials:
                cols.append(self._trials[f]({self._var: x, "N": net, **u}))
                continue
            if not pts:
                cols.append(net)
                continue
            series, x0, m = 0.0, None, 0
            if f in self._series:  # y = S(x) + corrections at the other points + (x - x0)^m N: a_m = N(x0) is free
                x0, m, s_expr, scale = self._series[f]
                series = s_expr({self._var: x})
                pts = [(ai, v) for ai, v in pts if abs(ai - x0) > 1e-12]
            vals = [v(u) for _, v in pts]
            base = series
            for i, (ai, _) in enumerate(pts):
                li = 1.0
                for j, (aj, _) in enumerate(pts):
                    if j != i:
                        li = li * (x - aj) / (ai - aj)
                if x0 is not None:  # keeps the series' order at x0; the value at ai is v_i - S(ai) + S(ai)
                    li = li * ((x - x0) / (ai - x0)) ** m
                    vals[i] = vals[i] - self._series[f][2]({self._var: torch.full_like(x[:1], ai)})
                base = base + vals[i] * li
            mult = 1.0 if x0 is None else scale * ((x0 - x) if x0 >= self._b else (x - x0)) ** m
            for ai, _ in pts:  # each factor positive inside the domain (a right-end point gives (b - x)/h)
                mult = mult * ((ai - x) if ai >= self._b else (x - ai)) / self._h
            cols.append(base + mult * net)
        return torch.cat(cols, dim=1)

    def singularities(self) -> tuple[Singularity, ...]:
        out = []
        fns = self.analysis.system.functions
        for p in self.analysis.imposed():
            text = p.relation_text(fns, self._var)
            if p.x is not None:
                out.append(Singularity(p.x, label=p.label, description=text))
            else:
                rel = [compile_expr(r) for r in p.relations]
                out.append(
                    Singularity(
                        _location(f"x_{p.label}"),
                        func=self._point_func(rel, p.relations),
                        label=p.label,
                        description=text,
                    )
                )
        return tuple(out)

    def _point_func(self, compiled, exprs):
        needs = sorted(
            {
                (f, k)
                for e in exprs
                for f in self.outputs
                for k in range(3)
                if sympy.Symbol(deriv_name(f, k)) in e.free_symbols
            }
        )

        def func(x, y, u):
            env: dict[str, Any] = {self._var: x, **u}
            for f, k in needs:
                env[deriv_name(f, k)] = y(f) if k == 0 else y.d(f, k)
            return tuple(c(env) for c in compiled)

        return func

    def conditions(self) -> tuple[Condition, ...]:
        out = []
        for c in self._soft:
            needs = sorted(
                {(f, k) for f in self.outputs for k in range(3) if sympy.Symbol(at_name(f, k)) in c.expr.free_symbols}
            )
            out.append(Condition(c.text.replace(" ", ""), c.point, _condition_func(compile_expr(c.expr), needs)))
        return tuple(out)

    def unknowns(self) -> tuple[Unknown, ...]:
        a, b = self.domain()
        out = [Unknown(k, float(v), "unknown constant of the spec") for k, v in self.spec.unknowns.items()]
        for p in self.analysis.imposed():
            if p.x is None:
                start = (self.analysis.system.moving or {}).get(p.label, 0.5 * (a + b))
                out.append(Unknown(f"x_{p.label}", start, f"moving singular point {p.label}"))
        return tuple(out)

    # -- reference and outputs ----------------------------------------------------------------------------
    def reference_solution(self, x: np.ndarray) -> np.ndarray | None:
        if not self.spec.reference:
            return None
        return reference_values(self.spec, self.params, np.asarray(x, dtype=float))

    def plot_markers(self, unknowns: Mapping[str, float]) -> dict[str, float]:
        return {f"{k} (trained)": float(v) for k, v in unknowns.items() if k.startswith("x_s")}

    def result_files(self) -> dict[str, str]:
        return {
            "analysis.txt": self.analysis.to_text() + "\n",
            "analysis.json": json.dumps(self.analysis.to_dict(), indent=2) + "\n",
        }


def _location(name: str):
    return lambda u: u[name]


def _condition_func(compiled, needs):
    def func(x, y, u):
        env: dict[str, Any] = dict(u)
        for f, k in needs:
            env[at_name(f, k)] = y(f) if k == 0 else y.d(f, k)
        return compiled(env)

    return func


def problem_class(spec: Spec) -> type[SpecProblem]:
    """A problem class for ``spec`` (parameters from the spec; the engine instantiates it per parameter set)."""
    eqs = ("ode",) if len(spec.eq_texts) == 1 else tuple(f"eq{i + 1}" for i in range(len(spec.eq_texts)))
    ref = (
        spec.reference if isinstance(spec.reference, str) else "; ".join(f"{k}: {v}" for k, v in spec.reference.items())
    )
    attrs = {
        "name": spec.name,
        "summary": f"from a spec file: {'; '.join(spec.eq_texts)}",
        "equation": "\n".join(spec.eq_texts),
        "parameters": tuple(Parameter(k, float(v), description="spec parameter") for k, v in spec.parameters.items()),
        "singular_points": "see: sciml analyze SPEC.yaml",
        "reference": f"{ref} (mpmath, 30 digits)" if ref else "",
        "outputs": tuple(spec.functions),
        "equations": eqs,
        "solver_defaults": dict(spec.solver),
        "spec": spec,
        "_analyses": {},
    }
    return type(f"Spec[{spec.name}]", (SpecProblem,), attrs)


# -- reference ------------------------------------------------------------------------------------------------
def _namespace(params: Mapping[str, float]) -> dict[str, Any]:
    import mpmath
    import scipy.special

    ns: dict[str, Any] = {k: getattr(mpmath, k) for k in dir(mpmath) if not k.startswith("_")}
    ns["special"] = scipy.special
    ns.update({k: float(v) for k, v in params.items()})
    return ns


def _ref_codes(spec: Spec) -> list[tuple[str, Any]]:
    exprs = [spec.reference] if isinstance(spec.reference, str) else [spec.reference[f] for f in spec.functions]
    out = []
    for e in exprs:
        try:
            out.append((e, compile(e, "<reference>", "eval")))
        except SyntaxError as exc:
            raise UsageError(f"reference {e!r} is not a valid expression: {exc.msg}") from None
    return out


def reference_values(spec: Spec, params: Mapping[str, float], x: np.ndarray) -> np.ndarray:
    """The spec's reference at ``x``: shape ``(n, n_functions)``, mpmath at 30 digits (scipy.special as ``special``)."""
    import mpmath

    ns = _namespace(params)
    codes = _ref_codes(spec)
    out = np.empty((len(x), len(codes)))
    with mpmath.workdps(30):
        for i, xi in enumerate(x):
            ns[spec.variable] = mpmath.mpf(float(xi))
            for j, (_text, code) in enumerate(codes):
                v = eval(code, {"__builtins__": {}}, ns)  # noqa: S307 - the user's own spec, no builtins
                c = complex(v)
                out[i, j] = c.real if abs(c.imag) <= 1e-12 * max(1.0, abs(c.real)) else math.nan
    return out


def _check_reference(spec: Spec, params: Mapping[str, float], domain: tuple[float, float]) -> None:
    a, b = domain
    try:
        v = reference_values(spec, params, np.array([a + 0.37 * (b - a)]))
    except Exception as exc:  # a user's expression: report what went wrong in one line
        raise UsageError(f"reference {spec.reference!r} cannot be evaluated: {type(exc).__name__}: {exc}") from None
    if not np.all(np.isfinite(v)):
        raise UsageError(f"reference {spec.reference!r} is not a finite real number inside the domain")
