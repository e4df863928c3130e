r"""Parse a :class:`~sciml.spec.format.Spec` into sympy: equations multiplied through, conditions, unknowns.

Derivatives are written ``y'``, ``y''`` (or ``y1``, ``y2``) and become the symbols ``y__1``, ``y__2``; ``y(x)``
is ``y``. Each equation ``lhs = rhs`` becomes the expression :math:`\mathrm{lhs} - \mathrm{rhs}`, brought over
one denominator and replaced by its **numerator**: the ODE multiplied through, so that nothing is divided by a
coefficient that vanishes (at a singular point the residual then reduces to the regularity relation).
Parameters are substituted as exact numbers (integers and short decimals stay rational), so the analysis is
exact wherever sympy can do it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import reduce
from tokenize import TokenError

import sympy
from sympy.core.function import AppliedUndef
from sympy.parsing.sympy_parser import convert_xor, parse_expr, standard_transformations

from sciml.errors import UsageError
from sciml.spec.format import Spec

TRANSFORMS = (*standard_transformations, convert_xor)  # x^2 means x**2, as physicists write it
EQUALS = re.compile(r"(?<![<>=!])=(?!=)")


def deriv_name(f: str, k: int) -> str:
    """Internal symbol name of the ``k``-th derivative of ``f`` (``y__2``)."""
    return f"{f}__{k}"


def at_name(f: str, k: int) -> str:
    """Internal symbol name of ``f^{(k)}`` evaluated at a condition's point (``y__1__at``)."""
    return f"{f}__{k}__at"


def pretty(text: str) -> str:
    """``y__2`` -> ``y''``, ``y__1__at`` -> ``y'`` (for messages and the analysis)."""
    text = re.sub(r"\b([A-Za-z]\w*?)__(\d+)__at\b", lambda m: m.group(1) + "'" * int(m.group(2)), text)
    return re.sub(r"\b([A-Za-z]\w*?)__(\d+)\b", lambda m: m.group(1) + "'" * int(m.group(2)), text)


def show(expr: sympy.Expr) -> str:
    return pretty(sympy.sstr(expr))


@dataclass(frozen=True)
class Condition:
    """One parsed condition: ``expr`` (in the ``at_name`` symbols and unknowns) vanishes at ``x = point``.

    ``hard`` is ``(function, value)`` when the condition is a plain value ``f(point) = value`` (imposed through the
    trial function), else ``None`` (a loss term).
    """

    text: str
    point: float
    expr: sympy.Expr
    hard: tuple[str, sympy.Expr] | None


@dataclass(frozen=True)
class System:
    """The parsed ODE system.

    ``residuals[i]`` is equation ``i`` multiplied through (symbols: the variable, ``deriv_name(f, k)`` and the
    unknowns); ``multiplied_by[i]`` the denominator it was multiplied by (1 if none); ``orders[f]`` the highest
    derivative of ``f`` that occurs.
    """

    spec: Spec
    params: dict[str, float]
    var: sympy.Symbol
    functions: tuple[str, ...]
    orders: dict[str, int]
    residuals: tuple[sympy.Expr, ...]
    multiplied_by: tuple[sympy.Expr, ...]
    unknowns: dict[str, float]
    conditions: tuple[Condition, ...]
    domain: tuple[float, float]
    weight: sympy.Expr | None = None
    trials: dict[str, sympy.Expr] | None = None
    moving: dict[str, float] | None = None

    def state_symbols(self) -> list[sympy.Symbol]:
        """``f, f', ...`` up to the highest order of every function."""
        return [sympy.Symbol(deriv_name(f, k)) for f in self.functions for k in range(self.orders[f] + 1)]

    def top(self, f: str) -> sympy.Symbol:
        return sympy.Symbol(deriv_name(f, self.orders[f]))


def exact(value: float) -> sympy.Expr:
    """A parameter value as a sympy number: exact for short fractions (3.0 -> 3, 0.25 -> 1/4, 1.3333333333333333
    -> 4/3), else the exact value of its shortest decimal."""
    v = float(value)
    if math.isinf(v) or math.isnan(v):
        raise UsageError(f"parameter value {v} is not finite")
    if v.is_integer():
        return sympy.Integer(int(v))
    r = sympy.nsimplify(v, rational=True, tolerance=1e-15 * max(1.0, abs(v)))
    # short fractions stay exact (0.25, 4/3 typed as 1.3333333333333333); a measured datum stays a float
    if r.q <= 10**4 and abs(float(r) - v) <= 1e-15 * max(1.0, abs(v)):
        return r
    return sympy.Rational(repr(v))  # the decimal as written: exact, so that sympy can still factor


def _total_derivative(d: str) -> Callable[[re.Match[str]], str]:
    return lambda m: "D(" * len(m.group(1)) + d + ")" * len(m.group(1))


def _primes(f: str) -> Callable[[re.Match[str]], str]:
    return lambda m: deriv_name(f, len(m.group(1)))


def _numbered(f: str, reserved: set[str]) -> Callable[[re.Match[str]], str]:
    return lambda m: m.group(0) if m.group(0) in reserved else deriv_name(f, int(m.group(1)))


def _rewrite_derivatives(
    text: str, functions: tuple[str, ...], var: str, reserved: set[str], definitions: tuple[str, ...] = ()
) -> str:
    for d in definitions:  # a defined quantity's derivative is its total derivative: a' -> D(a)
        text = re.sub(rf"\b{d}('+)", _total_derivative(d), text)
    for f in functions:
        text = re.sub(rf"\b{f}\s*\(\s*{var}\s*\)", f, text)  # y(x) -> y
        text = re.sub(rf"\b{f}('+)", _primes(f), text)
        text = re.sub(rf"\b{f}(\d)\b", _numbered(f, reserved), text)
    return text


def _parse(text: str, where: str, local: Mapping[str, sympy.Basic]) -> sympy.Expr:
    try:
        expr = parse_expr(text, local_dict=dict(local), transformations=TRANSFORMS)
    except (SyntaxError, TokenError, TypeError, AttributeError, ValueError) as exc:
        hint = " (multiplication must be explicit: l*(l + 1), 2*x*y')" if isinstance(exc, TypeError) else ""
        raise UsageError(f"{where}: sympy cannot parse {pretty(text)!r}: {exc}{hint}") from None
    if not isinstance(expr, sympy.Expr):
        raise UsageError(f"{where}: {pretty(text)!r} is not an expression")
    return expr


def _check_symbols(expr: sympy.Expr, allowed: set[str], where: str, hint: str) -> None:
    funcs = sorted({type(f).__name__ for f in expr.atoms(AppliedUndef)})
    if funcs:
        raise UsageError(f"{where}: unknown function {funcs[0]!r}{hint}")
    bad = sorted(s.name for s in expr.free_symbols if s.name not in allowed)
    if bad:
        raise UsageError(
            f"{where}: undefined symbol {pretty(bad[0])!r}; declare it under parameters, definitions or unknowns{hint}"
        )


def _split(text: str, where: str) -> tuple[str, str]:
    parts = EQUALS.split(text)
    if len(parts) == 1:
        return parts[0], "0"
    if len(parts) != 2:
        raise UsageError(f"{where}: {text!r} must have one '=' (lhs = rhs)")
    return parts[0], parts[1]


def parse_system(spec: Spec, params: Mapping[str, float]) -> System:
    """Parse equations, definitions, domain and conditions of ``spec`` with parameter values ``params``."""
    var = sympy.Symbol(spec.variable)
    values = {k: exact(v) for k, v in params.items()}
    local: dict[str, sympy.Basic] = {spec.variable: var}
    local.update({k: sympy.Symbol(k) for k in spec.unknowns})
    local.update(values)
    reserved = {spec.variable, *spec.parameters, *spec.unknowns, *spec.definitions}
    max_k = 4
    for f in spec.functions:
        for k in range(max_k + 1):
            local[deriv_name(f, k)] = sympy.Symbol(deriv_name(f, k))
        local[f] = local[deriv_name(f, 0)]
    state = {deriv_name(f, k) for f in spec.functions for k in range(max_k + 1)}
    allowed = {spec.variable, *spec.unknowns, *state}

    def total_derivative(e: sympy.Expr) -> sympy.Expr:
        """d/dx of an expression in x, the functions and their derivatives (chain rule)."""
        e = sympy.sympify(e)
        out = sympy.diff(e, var)
        for f in spec.functions:
            for k in range(max_k):
                out += sympy.diff(e, local[deriv_name(f, k)]) * local[deriv_name(f, k + 1)]
        return out

    local["D"] = total_derivative
    defs = tuple(spec.definitions)
    for name, text in spec.definitions.items():
        where = f"definition {name}"
        expr = _parse(_rewrite_derivatives(text, spec.functions, spec.variable, reserved, defs), where, local)
        _check_symbols(expr, allowed, where, "")
        local[name] = expr

    domain = [_number(d, f"domain[{i}]", values) for i, d in enumerate(spec.domain)]
    a, b = domain
    if not a < b:
        raise UsageError(f"domain [{a:g}, {b:g}] must have a < b")
    moving = {label: _number(v, f"moving {label}", values) for label, v in spec.moving.items()}
    for label, start in moving.items():
        if not a <= start <= b:
            raise UsageError(f"moving {label}: the starting position {start:g} is outside the domain [{a:g}, {b:g}]")

    residuals, dens = [], []
    for i, text in enumerate(spec.eq_texts):
        where = "equation" if spec.equation else f"equations[{i}]"
        lhs, rhs = _split(text, where)
        rw = [_rewrite_derivatives(s, spec.functions, spec.variable, reserved, defs) for s in (lhs, rhs)]
        expr = _parse(rw[0], where, local) - _parse(rw[1], where, local)
        _check_symbols(expr, allowed, where, "")
        num, den = sympy.fraction(sympy.together(expr))
        # multiply through only by the factors that can vanish in the domain; dividing by a constant or by a
        # factor that never vanishes (exp, 1 + K rho^(1/3), ...) is harmless and keeps the equation's scale
        coeff, factors = sympy.factor_list(den)
        state_syms = [sympy.Symbol(deriv_name(f, k)) for f in spec.functions for k in range(max_k + 1)]
        keep = [(f, m) for f, m in factors if not never_zero(f, var, (a, b), state_syms)]
        den = product(f**m for f, m in keep)
        num = num / (coeff * product(f**m for f, m in factors if (f, m) not in keep))
        if num == 0:
            raise UsageError(f"{where}: {text!r} is identically 0 = 0")
        residuals.append(num)
        dens.append(den)
    orders = {}
    for f in spec.functions:
        present = [k for k in range(max_k + 1) for r in residuals if sympy.Symbol(deriv_name(f, k)) in r.free_symbols]
        if not present or max(present) == 0:
            raise UsageError(f"no derivative of {f} appears in the equations: each function needs an ODE (y', y'')")
        if max(present) > 2:
            raise UsageError(
                f"{f} appears with derivative order {max(present)}; only first and second order are supported"
            )
        orders[f] = max(present)

    conditions = tuple(_parse_condition(spec, t, i, local, values, (a, b)) for i, t in enumerate(spec.conditions))
    weight = None
    if spec.weight:
        weight = _parse(spec.weight, "weight", {spec.variable: var, **values})
        _check_symbols(weight, {spec.variable}, "weight", " (a weight may use the variable and parameters only)")
        grid = [weight.subs(var, exact(a + (b - a) * i / 200)) for i in range(201)]
        if not all(g.is_number and g.is_real and float(g) > 0 and math.isfinite(float(g)) for g in grid):
            raise UsageError(f"weight {spec.weight!r} must be finite and positive on [{a:g}, {b:g}]")
    trials = {}
    for f, text in spec.trial.items():
        where = f"trial of {f}"
        loc = {spec.variable: var, "N": sympy.Symbol("N"), **values, **{k: sympy.Symbol(k) for k in spec.unknowns}}
        trials[f] = _parse(text, where, loc)
        _check_symbols(trials[f], {spec.variable, "N", *spec.unknowns}, where, " (use the variable, N and parameters)")
        if sympy.Symbol("N") not in trials[f].free_symbols:
            raise UsageError(f"{where}: {text!r} does not use the network output N")
    return System(
        spec=spec,
        params=dict(params),
        var=var,
        functions=tuple(spec.functions),
        orders=orders,
        residuals=tuple(residuals),
        multiplied_by=tuple(dens),
        unknowns=dict(spec.unknowns),
        conditions=conditions,
        domain=(a, b),
        weight=weight,
        trials=trials,
        moving=moving,
    )


def _number(d: float | str, where: str, values: Mapping[str, sympy.Expr]) -> float:
    """A number of the spec, or an expression in the parameters (``4/3 + 0.3/c``)."""
    v = _parse(str(d), where, values).evalf() if isinstance(d, str) else sympy.Float(d)
    if not v.is_number or not v.is_real:
        raise UsageError(f"{where} = {d!r} is not a real number with these parameters")
    return float(v)


def _find_calls(text: str, functions: tuple[str, ...]) -> list[tuple[int, int, str, int, str]]:
    """Occurrences ``f''(arg)`` in ``text``: (start, end, f, order, arg), with balanced parentheses in ``arg``."""
    out = []
    pat = re.compile(rf"\b({'|'.join(map(re.escape, functions))})('*)\s*\(")
    pos = 0
    while (m := pat.search(text, pos)) is not None:
        depth, j = 1, m.end()
        while j < len(text) and depth:
            depth += {"(": 1, ")": -1}.get(text[j], 0)
            j += 1
        if depth:
            break
        out.append((m.start(), j, m.group(1), len(m.group(2)), text[m.end() : j - 1]))
        pos = j
    return out


def _parse_condition(
    spec: Spec, text: str, i: int, local: Mapping[str, sympy.Basic], values: Mapping[str, sympy.Expr], dom
) -> Condition:
    where = f"conditions[{i}] {text!r}"
    calls = _find_calls(text, tuple(spec.functions))
    if not calls:
        raise UsageError(f"{where}: names no value of {', '.join(spec.functions)} at a point (write e.g. y(0) = 1)")
    points = []
    for *_, arg in calls:
        p = _parse(arg, where, values)
        if not (p.is_number and p.is_real):
            raise UsageError(f"{where}: the point {arg!r} is not a number with these parameters")
        points.append(float(p))
    if any(abs(p - points[0]) > 1e-12 * max(1.0, abs(p)) for p in points):
        raise UsageError(f"{where}: a condition relates values at one point only (found {sorted(set(points))})")
    point = points[0]
    a, b = dom
    tol = 1e-12 * max(1.0, abs(a), abs(b))
    if not a - tol <= point <= b + tol:
        raise UsageError(f"{where}: {spec.variable} = {point:g} is outside the domain [{a:g}, {b:g}]")
    point = min(max(point, a), b)
    pieces, last = [], 0
    for start, end, f, k, _ in calls:
        pieces += [text[last:start], at_name(f, k)]
        last = end
    rewritten = "".join([*pieces, text[last:]])
    lhs, rhs = _split(rewritten, where)
    loc = dict(local)
    ats = {at_name(f, k) for f in spec.functions for k in range(3)}
    loc.update({n: sympy.Symbol(n) for n in ats})
    for f in spec.functions:  # a bare function name in a condition has no point
        loc.pop(f, None)
    expr = _parse(lhs, where, loc) - _parse(rhs, where, loc)
    _check_symbols(expr, {*spec.unknowns, *ats}, where, " (conditions may use parameters and unknowns)")
    return Condition(text=text, point=point, expr=expr, hard=_hard_value(expr, spec.functions))


def _hard_value(expr: sympy.Expr, functions: tuple[str, ...]) -> tuple[str, sympy.Expr] | None:
    """``(f, v)`` if ``expr = 0`` reads ``f(a) = v`` (linear in the one value, nothing else of the solution)."""
    syms = [s for s in expr.free_symbols if s.name.endswith("__at")]
    if len(syms) != 1 or not syms[0].name.endswith("__0__at"):
        return None
    s = syms[0]
    coef = sympy.diff(expr, s)
    if coef.free_symbols or coef == 0 or sympy.diff(expr, s, 2) != 0:
        return None
    return s.name[: -len("__0__at")], sympy.simplify(-(expr - coef * s) / coef)


def never_zero(fac: sympy.Expr, var: sympy.Symbol, domain: tuple[float, float], state: list[sympy.Symbol]) -> bool:
    r"""Whether ``fac`` cannot vanish on the domain for any real solution: sympy's sign assumptions with
    :math:`x = a + t` and :math:`x = b - t`, :math:`t \ge 0`, and real function values (``2x - 4 + e^{2W}`` on
    ``[20, 140.5]``: positive)."""
    if fac.is_number:
        return fac != 0
    t = sympy.Symbol("t_", nonnegative=True)
    real = {s: sympy.Symbol(s.name, real=True) for s in state}
    a, b = domain
    for shifted in (exact(a) + t, exact(b) - t):
        g = fac.subs(var, shifted).subs(real)
        if g.is_positive or g.is_negative:
            return True
    return False


def leading_matrix(system: System) -> sympy.Matrix:
    """:math:`A_{ij} = \\partial R_i / \\partial f_j^{(n_j)}`: the coefficients of the highest derivatives."""
    return sympy.Matrix([[sympy.diff(r, system.top(f)) for f in system.functions] for r in system.residuals])


def is_linear(system: System) -> bool:
    """Every residual is linear (affine) in the functions and their derivatives."""
    state = system.state_symbols()
    return all(sympy.diff(r, s, t) == 0 for r in system.residuals for s in state for t in state)


def product(items) -> sympy.Expr:
    return reduce(lambda p, q: p * q, items, sympy.Integer(1))
