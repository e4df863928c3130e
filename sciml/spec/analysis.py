r"""Regularity analysis of a parsed ODE system: singular points, their kind, Frobenius exponents, what is imposed.

For one linear second-order equation :math:`p\,y'' + q\,y' + r\,y = s` (multiplied through), a point
:math:`x_0` with :math:`p(x_0) = 0` is *regular singular* when :math:`P = (x-x_0)q/p` and
:math:`Q = (x-x_0)^2 r/p` are analytic there, and then the solutions behave like :math:`(x-x_0)^\rho` with
the indicial exponents

.. math::

    \rho(\rho - 1) + P(x_0)\,\rho + Q(x_0) = 0 ,

a logarithmic second solution being possible when the exponents differ by an integer (always when they are
equal); otherwise it is *irregular*. A solution analytic at :math:`x_0` satisfies the residual there, which
is the algebraic **regularity relation** :math:`q(x_0)\,y'(x_0) + r(x_0)\,y(x_0) = s(x_0)`: that is what the
engine imposes (the loss term ``regularity@x=x0``). First-order equations: :math:`\rho = -\lim (x-x_0) r/p`.

Nonlinear equations and systems: the singular points are the zeros of :math:`\det A`, :math:`A_{ij}` the
coefficient of the highest derivative of function :math:`j` in equation :math:`i`. Factors of
:math:`\det A` that depend on :math:`x` only give fixed points (their relation is again the residual there);
factors :math:`g` that depend on the solution give **moving** singular points (a sonic point, a sound
horizon): their position becomes a trainable scalar :math:`x_s` with the regular-crossing conditions
:math:`g = 0` and, for every equation whose leading coefficients vanish with :math:`g`, residual :math:`= 0`.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

import sympy

from sciml.errors import UsageError
from sciml.spec.format import BRANCHES
from sciml.spec.frobenius import frobenius, zeros
from sciml.spec.series import ForcedSeries, forced_series
from sciml.spec.symbolic import System, deriv_name, exact, is_linear, leading_matrix, never_zero, show


@dataclass(frozen=True)
class SingularPoint:
    """One singular point (fixed at ``x``, or moving with the solution: ``x is None``)."""

    label: str
    x: float | None
    exact: str
    kind: str
    exponents: tuple[str, ...] = ()
    log: str = ""
    branch: str = ""
    relations: tuple[sympy.Expr, ...] = ()
    factor: sympy.Expr | None = None
    rows: tuple[int, ...] = ()
    imposed: bool = False
    action: str = ""
    slopes: str = ""
    slope_choice: str = ""
    series: ForcedSeries | None = None

    @property
    def term(self) -> str:
        return f"regularity@{self.label}"

    def relation_text(self, functions: tuple[str, ...], var: str) -> str:
        """The imposed relations, with function values written at the point (``-2*y'(1) + 12*y(1) = 0``)."""
        where = var if self.x is None else self.exact
        return "; ".join(_at(show(r), where, functions) + " = 0" for r in self.relations)


def _at(text: str, where: str, functions: tuple[str, ...]) -> str:
    """``y'' + 2*y`` -> ``y''(1) + 2*y(1)``."""
    names = "|".join(map(re.escape, functions))
    return re.sub(rf"\b({names})('*)(?![\w'(])", lambda m: f"{m.group(1)}{m.group(2)}({where})", text)


@dataclass(frozen=True)
class Analysis:
    """Everything ``sciml analyze`` reports, and what the engine builds from it."""

    system: System
    linear: bool
    leading: str
    points: tuple[SingularPoint, ...]
    n_constants: int
    n_constraints: int
    notes: tuple[str, ...] = field(default_factory=tuple)

    def imposed(self) -> tuple[SingularPoint, ...]:
        return tuple(p for p in self.points if p.imposed)

    # -- output -----------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        s = self.system
        var = s.spec.variable
        return {
            "name": s.spec.name,
            "parameters": dict(s.params),
            "functions": list(s.functions),
            "orders": dict(s.orders),
            "domain": list(s.domain),
            "linear": self.linear,
            "equations_multiplied_through": [show(r) + " = 0" for r in s.residuals],
            "multiplied_by": [show(d) for d in s.multiplied_by],
            "leading_coefficient": self.leading,
            "singular_points": [
                {
                    "label": p.label,
                    "x": p.x,
                    "exact": p.exact,
                    "kind": p.kind,
                    "exponents": list(p.exponents),
                    "log": p.log,
                    "branch": p.branch,
                    "relation": p.relation_text(s.functions, var),
                    "factor": None if p.factor is None else show(p.factor),
                    "series": "" if p.series is None else _series_text(p.series, s),
                    "slopes": p.slopes,
                    "slope_choice": p.slope_choice,
                    "regular_requested": p.imposed,
                    "engine": p.action,
                }
                for p in self.points
            ],
            "conditions": [{"text": c.text, "x": c.point, "imposed": _how(c, s)} for c in s.conditions],
            "unknowns": dict(s.unknowns),
            "constants_to_fix": self.n_constants,
            "conditions_and_relations": self.n_constraints,
            "notes": list(self.notes),
        }

    def to_text(self) -> str:
        s = self.system
        d = self.to_dict()
        params = ", ".join(f"{k}={v:g}" for k, v in s.params.items())
        lines = [f"{s.spec.name}" + (f"  ({params})" if params else "")]
        kind = "linear" if self.linear else "nonlinear"
        orders = ", ".join(f"{f}: {n}" for f, n in s.orders.items())
        lines.append(f"  {kind}; order {orders}; domain [{s.domain[0]:g}, {s.domain[1]:g}]")
        for eq, den in zip(d["equations_multiplied_through"], d["multiplied_by"], strict=True):
            lines.append(f"  equation    : {eq}" + ("" if den == "1" else f"   (multiplied through by {den})"))
        lines.append(f"  leading coefficient: {self.leading}")
        if not self.points:
            lines.append("  singular points: none in the domain")
        else:
            lines.append(f"  singular points in [{s.domain[0]:g}, {s.domain[1]:g}]:")
        for p in d["singular_points"]:
            head = f"x = {p['exact']}" if p["x"] is not None else f"{p['label']}: {p['factor']} = 0"
            lines.append(f"    {head}: {p['kind']}")
            if p["exponents"]:
                lines.append(f"      exponents  : {', '.join(p['exponents'])}" + (f"; {p['log']}" if p["log"] else ""))
            if p["branch"]:
                lines.append(f"      branch     : {p['branch']}")
            if p["series"]:
                lines.append(f"      series     : {p['series']}")
            if p["slopes"]:
                pick = (
                    f"the {p['slope_choice']} root imposed (branch)"
                    if p["slope_choice"]
                    else f"no branch chosen (branch: {{{p['label']}: larger}} or smaller picks one)"
                )
                lines.append(f"      slopes     : {p['slopes']}; {pick}")
            if p["relation"]:
                lines.append(f"      relation   : {p['relation']}")
            lines.append(f"      engine     : {p['engine']}")
        for c in d["conditions"]:
            lines.append(f"  condition   : {c['text']}  -> {c['imposed']}")
        if s.unknowns:
            lines.append("  unknowns    : " + ", ".join(f"{k} (start {v:g})" for k, v in s.unknowns.items()))
        lines.append(
            f"  count       : {self.n_constants} constants to fix, {self.n_constraints} conditions and regularity "
            "relations"
        )
        lines += [f"  note        : {n}" for n in self.notes]
        return "\n".join(lines)


def _series_text(series: ForcedSeries, system: System) -> str:
    """``y = 1 - x/2 + O(x**2), forced by multiple roots: built into the trial function``."""
    var = system.var
    t = var - series.point
    head = f"{series.function} = {show(series.expr(var))} + O({show(t**series.order)})"
    if series.function in (system.trials or {}):
        return f"{head}, forced by multiple roots (the spec's own trial function is used)"
    return f"{head}, forced by multiple roots: built into the trial function"


def _how(c, system: System) -> str:
    """How the engine imposes condition ``c``."""
    if c.hard is None:
        return "soft (loss term)"
    if c.hard[0] in (system.trials or {}):
        return "built into the given trial function (kept as a loss term, a check)"
    return "hard (trial function)"


def _unit_scale(g: sympy.Expr) -> sympy.Expr:
    """``g`` divided by its largest numeric coefficient (a crossing relation of order one, whatever the units)."""
    try:
        coeffs = sympy.Poly(sympy.expand(g)).coeffs()
        scale = max(abs(float(c)) for c in coeffs)
    except (sympy.PolynomialError, TypeError, ValueError):
        return g
    return g / sympy.nsimplify(scale, rational=True) if scale > 0 else g


def _pinned_by_condition(system: System, g: sympy.Expr) -> str | None:
    """The point of a hard condition where the factor ``g`` vanishes by that condition alone (e.g. ``y(0) = 1`` and
    ``g = y^2 - 1 + x``), or ``None``."""
    for c in system.conditions:
        if c.hard is None or c.hard[1].free_symbols:
            continue
        f, value = c.hard
        sub = g.subs({system.var: exact(c.point), sympy.Symbol(deriv_name(f, 0)): value})
        if not (sub.free_symbols & set(system.state_symbols())) and sympy.simplify(sub) == 0:
            return f"{c.point:g}"
    return None


def _crossing_relation(rest: sympy.Expr, g: sympy.Expr, others: list[sympy.Expr], system: System) -> sympy.Expr:
    r"""What must vanish at a regular crossing of the moving singular point :math:`g = 0`: ``rest`` (the equation
    with its highest derivatives dropped) without the factors :math:`h` that can vanish on :math:`g = 0` only where
    another factor :math:`f` of the leading coefficient vanishes too (:math:`f` in the ideal of :math:`g, h`).

    There two singular loci meet (a degenerate point, not a simple crossing); kept, such a factor lets the trained
    location slide to that point and satisfy the crossing terms trivially. Example (khronon, :math:`c = 2`):
    ``rest`` :math:`= 4 y B`, :math:`g = x - 3y^2 - 1`; :math:`y = 0` on :math:`g = 0` means :math:`x = 1`, where
    :math:`P_2 = x + y^2 - 1` vanishes as well, so the relation is :math:`B = 0`. Factors sympy cannot treat as
    polynomials are kept.
    """
    if not others:
        return rest
    state = set(system.state_symbols())
    gens = [system.var, *system.state_symbols()]
    original = rest
    rest, den = sympy.fraction(sympy.together(rest))  # the denominator never vanishes (symbolic.parse_system)
    try:
        coeff, factors = sympy.factor_list(rest, *gens)
        dropped = [
            (h, m)
            for h, m in factors
            if h.free_symbols & state and any(sympy.groebner([g, h], *gens, order="lex").contains(f) for f in others)
        ]
    except (sympy.PolynomialError, sympy.GeneratorsNeeded, sympy.CoercionFailed, TypeError, ValueError):
        return original  # not polynomial in the state (exp, fractional powers): nothing is divided out
    if not dropped:
        return original
    return sympy.factor(coeff * sympy.Mul(*(h**m for h, m in factors if (h, m) not in dropped))) / den


def _series_at(system: System, x0: sympy.Expr, value: float) -> ForcedSeries | None:
    """The Taylor terms forced at ``x0`` through multiple roots (:mod:`sciml.spec.series`), for one equation with
    a plain value condition there."""
    if len(system.functions) != 1:
        return None
    f = system.functions[0]
    for c in system.conditions:
        if c.hard is not None and c.hard[0] == f and abs(c.point - value) <= 1e-12 * max(1.0, abs(value)):
            if c.hard[1].free_symbols:
                return None
            return forced_series(system.residuals[0], system.var, f, x0, sympy.nsimplify(c.hard[1]))
    return None


def _slope_quadratic(system: System, residual: sympy.Expr) -> tuple[sympy.Expr, sympy.Expr, sympy.Expr] | None:
    r"""Coefficients :math:`(a, b, c)` of the L'Hôpital quadratic :math:`a Z^2 + b Z + c = 0` for the highest
    derivative :math:`Z = y^{(n)}` at a moving singular point of one equation :math:`R = A Z + \ldots = 0`.

    Along a solution :math:`R \equiv 0`, so :math:`dR/dx = 0`; at the point :math:`A = 0` removes :math:`y^{(n+1)}`,
    and what is left, :math:`\partial_x R + \sum_{k<n} \partial_{y^{(k)}} R\, y^{(k+1)}`, is quadratic in
    :math:`Z`: its two roots are the slopes of the two solutions crossing there (Parker wind: :math:`v' = \pm 1` at
    the sonic point). ``None`` for a system or an equation not linear in :math:`Z`.
    """
    if len(system.functions) != 1:
        return None
    f = system.functions[0]
    n = system.orders[f]
    z = sympy.Symbol(deriv_name(f, n))
    num = sympy.fraction(sympy.together(residual))[0]  # the never-vanishing denominator does not move the roots
    if sympy.diff(num, z, 2) != 0:
        return None
    d = sympy.diff(num, system.var) + sum(
        sympy.diff(num, sympy.Symbol(deriv_name(f, k))) * sympy.Symbol(deriv_name(f, k + 1)) for k in range(n)
    )
    try:
        poly = sympy.Poly(sympy.expand(d), z)
    except sympy.PolynomialError:
        return None
    if poly.degree() != 2:
        return None
    a, b, c = poly.all_coeffs()
    return a, b, c


def _slopes_text(system: System, relations: tuple[sympy.Expr, ...], quad) -> str:
    """Both roots of the quadratic where the crossing relations fix the point, e.g. ``r = 1, v = 1: v' = -1, 1``;
    otherwise which derivative the quadratic is for."""
    f = system.functions[0]
    z = sympy.Symbol(deriv_name(f, system.orders[f]))
    zname = show(z)
    used = set().union(*(r.free_symbols for r in relations))
    unknowns = [system.var] + [s for s in system.state_symbols() if s != z and s in used]
    if len(relations) == len(unknowns):
        try:
            sols = sympy.solve(list(relations), unknowns, dict=True)
        except (NotImplementedError, TypeError, ValueError):
            sols = []
        a, b = system.domain
        out = []
        for sol in sols:
            if len(sol) != len(unknowns) or not all(v.is_real for v in sol.values()):
                continue
            if not a <= float(sol[system.var]) <= b:
                continue
            roots = sympy.Poly(sum(co.subs(sol) * z ** (2 - i) for i, co in enumerate(quad)), z).nroots()
            where = ", ".join(f"{show(k)} = {sympy.sstr(v)}" for k, v in sol.items())
            vals = sorted(float(sympy.re(r)) for r in roots if abs(sympy.im(r)) < 1e-12)
            out.append(f"{where}: {zname} = " + (", ".join(f"{v:.6g}" for v in vals) or "no real root"))
        if out:
            return "; ".join(out)
    return f"two roots {zname} of a quadratic at the point (where the solution fixes it)"


# -- the analysis ------------------------------------------------------------------------------------------
def analyze(system: System) -> Analysis:
    """Find and classify the singular points of ``system`` and decide what the engine imposes where.

    Raises
    ------
    UsageError
        An irregular singular point asked to be regular, a requested point that is not singular, or too few
        conditions and regularity relations to fix a solution.
    """
    x = system.var
    a, b = system.domain
    lin = is_linear(system)
    A = leading_matrix(system)
    det = sympy.factor(A.det()) if A.shape[0] > 1 else sympy.factor(A[0, 0])
    if det == 0:
        raise UsageError(
            "the highest derivatives drop out of the equations (their coefficient matrix is singular everywhere); "
            "write one equation per function with its highest derivative"
        )
    state = set(system.state_symbols())
    _, factors = sympy.factor_list(sympy.fraction(sympy.together(det))[0])  # the denominator never vanishes
    fixed_part = sympy.Integer(1)
    moving = []
    singular_factors = []
    for fac, _mult in factors:
        if never_zero(fac, x, system.domain, system.state_symbols()):
            continue
        if fac.has(x) or fac.free_symbols & state:
            singular_factors.append(fac)
        if fac.free_symbols & state:
            moving.append(fac)
        elif fac.has(x):
            fixed_part *= fac
    for bad in (s for s in fixed_part.free_symbols if s != x):
        raise UsageError(
            f"the leading coefficient depends on the unknown {bad.name}; singular points must not move "
            "with an unknown constant"
        )
    single_linear = lin and len(system.functions) == 1
    if single_linear:
        f = system.functions[0]
        coef = [sympy.diff(system.residuals[0], sympy.Symbol(deriv_name(f, k))) for k in range(system.orders[f] + 1)]
    points: list[SingularPoint] = []
    for value, text, is_exact in zeros(fixed_part, x, a, b):
        x0 = sympy.sympify(text) if is_exact else sympy.Float(value, 17)
        label = f"{system.spec.variable}={value:g}"
        rel = tuple(sympy.simplify(r.subs(x, x0)) for r in system.residuals)
        rel = tuple(r for r in rel if r != 0)
        info: dict[str, Any] = {
            "kind": "singular point" + ("" if lin else " (nonlinear: no Frobenius exponents)"),
            "regular_ok": True,
        }
        if single_linear:
            info = frobenius(coef, x, x0)
        points.append(
            SingularPoint(
                label=label,
                x=value,
                exact=text if is_exact else f"{value:.12g} (numeric)",
                kind=info["kind"],
                exponents=info.get("exponents", ()),
                log=info.get("log", ""),
                branch=info.get("branch", ""),
                relations=rel,
                imposed=info["regular_ok"],
                series=_series_at(system, x0, value),
            )
        )
    A_rows = [list(A.row(i)) for i in range(A.shape[0])]
    tops = {system.top(f): 0 for f in system.functions}
    # the points a condition pins are listed last, so that s1, s2, ... name the trained points whatever order
    # sympy factors in (khronon: the sound horizon is s1 for every c)
    moving.sort(key=lambda g: _pinned_by_condition(system, g) is not None)
    for i, g in enumerate(moving, 1):
        rows = tuple(
            j
            for j, row in enumerate(A_rows)
            if all(
                not (sympy.fraction(sympy.cancel(sympy.fraction(sympy.together(e))[0] / g))[1].free_symbols & state)
                for e in row
            )
        )
        pinned = _pinned_by_condition(system, g)
        # where g = 0 the highest derivatives drop out of these rows: what is left must vanish too
        others = [f for f in singular_factors if f != g]
        rest = tuple(_crossing_relation(system.residuals[j].subs(tops), g, others, system) for j in rows)
        label = f"s{i}"
        quad = _slope_quadratic(system, system.residuals[0]) if pinned is None else None
        slopes, choice = "", system.spec.branch.get(label, "")
        if quad is not None:
            slopes = _slopes_text(system, (g, *rest), quad)
            if choice:
                a_, b_, c_ = quad
                root = sympy.sqrt(sympy.Max(b_**2 - 4 * a_ * c_, 0))  # clipped: a negative value mid-training
                z = system.top(system.functions[0])
                rest = (*rest, 2 * a_ * z + b_ - BRANCHES[choice] * sympy.sign(a_) * root)
        elif choice:
            raise UsageError(
                f"branch: the crossing at {label} has no L'Hôpital quadratic for one highest derivative (a system, "
                "an equation not linear in its highest derivative, or a point a condition fixes); remove it"
            )
        points.append(
            SingularPoint(
                label=label,
                x=None,
                exact="",
                kind="moving singular point (its position depends on the solution)",
                relations=(_unit_scale(g), *rest),
                factor=g,
                rows=rows,
                imposed=pinned is None,
                slopes=slopes,
                slope_choice=choice,
                branch=(
                    "regular crossing: the factor and what is left of the equation(s) it multiplies vanish together"
                    if pinned is None
                    else f"vanishes at {system.spec.variable} = {pinned}, where a condition fixes the solution: "
                    "not a separate moving point"
                ),
            )
        )
    unknown = sorted(set(system.spec.branch) - {p.label for p in points if p.x is None})
    if unknown:
        labels = ", ".join(p.label for p in points if p.x is None) or "none"
        raise UsageError(f"branch: {unknown[0]} is not a moving singular point (moving points: {labels})")
    points = _apply_requests(system, points)
    n_constants = (
        sum(system.orders.values()) + len(system.unknowns) + sum(1 for p in points if p.imposed and p.x is None)
    )
    n_constraints = len(system.conditions) + sum(len(p.relations) for p in points if p.imposed)
    notes = []
    if lin and not single_linear:
        notes.append("linear system: Frobenius exponents are reported for single equations only")
    if n_constraints < n_constants and not lin:
        notes.append(
            f"{n_constants} constants to fix but only {n_constraints} conditions and regularity relations: counting "
            "is a guide only for nonlinear equations (a relation may fix more than one constant); check the solution"
        )
    elif n_constraints < n_constants:
        raise UsageError(
            f"too few conditions to fix a solution: {n_constants} constants (orders {sum(system.orders.values())}"
            f" + {len(system.unknowns)} unknowns + moving points) but only {len(system.conditions)} conditions and "
            f"{n_constraints - len(system.conditions)} regularity relations; add conditions such as y(a) = v"
        )
    return Analysis(
        system=system,
        linear=lin,
        leading=show(det),
        points=tuple(points),
        n_constants=n_constants,
        n_constraints=n_constraints,
        notes=tuple(notes),
    )


def _apply_requests(system: System, points: list[SingularPoint]) -> list[SingularPoint]:
    """Mark the points ``regular_at`` asks for; describe what the engine does with each."""
    req = system.spec.regular_at
    var = system.spec.variable
    if req == "all":
        for p in points:
            if p.x is not None and "irregular" in p.kind:
                raise UsageError(
                    f"{var} = {p.exact} is an irregular singular point and cannot be made regular; list the points "
                    f"to keep regular in regular_at (without {p.exact}) and fix the solution with conditions"
                )
        wanted = {id(p) for p in points}
    elif req == "none":
        wanted = set()
    else:
        wanted = set()
        for item in req:
            if isinstance(item, str) and item.strip() in {p.label for p in points if p.x is None}:
                wanted |= {id(p) for p in points if p.label == item.strip()}
                continue
            try:
                v = float(exact(float(sympy.sympify(item, locals={k: exact(w) for k, w in system.params.items()}))))
            except (TypeError, ValueError, sympy.SympifyError):
                raise UsageError(f"regular_at: cannot read {item!r} as a point") from None
            hit = [p for p in points if p.x is not None and abs(p.x - v) <= 1e-9 * max(1.0, abs(v))]
            if not hit:
                sing = ", ".join(p.exact if p.x is not None else p.label for p in points) or "none"
                raise UsageError(f"regular_at: {var} = {v:g} is not a singular point in the domain (singular: {sing})")
            if "irregular" in hit[0].kind:
                raise UsageError(
                    f"regular_at: {var} = {hit[0].exact} is an irregular singular point; no regularity relation "
                    "selects a solution there (remove it and use conditions)"
                )
            wanted.add(id(hit[0]))
    out = []
    for p in points:
        on = id(p) in wanted
        if p.x is None:
            if not p.imposed:
                action = "nothing (see branch)"
            elif on:
                action = f"trainable location x_{p.label} with the regular-crossing terms ({p.term})"
            else:
                action = "not imposed (not in regular_at)"
        elif on and p.relations:
            action = f"collocation point + loss term {p.term}"
        elif on:
            action = "collocation point (the residual vanishes identically there: nothing to impose)"
        else:
            action = "not imposed (not in regular_at)"
        imposed = on and (p.imposed if p.x is None else bool(p.relations))
        out.append(dataclasses.replace(p, imposed=imposed, action=action))
    return out


def analyze_spec(spec, params) -> Analysis:
    """Parse and analyse in one call."""
    from sciml.spec.symbolic import parse_system

    return analyze(parse_system(spec, params))
