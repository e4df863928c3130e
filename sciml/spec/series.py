r"""Taylor coefficients that an equation forces at a singular point where a condition fixes the value.

With :math:`y(x_0) = v` and :math:`y = \sum_k a_k t^k`, :math:`t = x - x_0`, the multiplied-through residual is
expanded in :math:`t` (exact rational arithmetic, truncated) and solved order by order: the lowest non-vanishing
order that contains only the lowest unknown coefficient :math:`a_k` fixes it when it has one real root. The walk
stops at the first coefficient that is free (it appears together with higher ones, e.g. the khronon's æther charge
:math:`a_4`), has several roots, or never appears.

A coefficient fixed by a **multiple** root (khronon at :math:`x = 0`: :math:`9(2a_1 + 1)^2 = 0`, then
:math:`(8a_2 + 1)^2/2 = 0`, :math:`5(16a_3 + 1)^2/64 = 0`) is the case the collocation cannot resolve: the residual
is quadratic in its error, so a residual of 1e-10 leaves errors of 1e-5. Those coefficients (and the ones below
them) are built into the trial function; simple roots (every linear equation) are left to the residual, which pins
them linearly.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy
from sympy import QQ
from sympy.polys.rings import ring

MAX_COEFFS = 6  # coefficients a_1 .. a_6 at most: the orders checked reach 2 * MAX_COEFFS + 2


@dataclass(frozen=True)
class ForcedSeries:
    """:math:`y = \\sum_{k < m} a_k (x - x_0)^k + O((x - x_0)^m)` with ``coeffs = (a_0, ..., a_{m-1})``."""

    function: str
    point: sympy.Expr
    coeffs: tuple[sympy.Expr, ...]

    @property
    def order(self) -> int:
        return len(self.coeffs)

    @property
    def scale(self) -> float:
        """Size of the last non-zero forced term beyond :math:`a_0` (1 if none): the trial multiplies the network by
        it, so that the free remainder starts at the size of the terms before it (khronon: 1/16, the class uses
        1/8; with 1 the same training slid to a spurious horizon)."""
        nonzero = [abs(float(c)) for c in self.coeffs[1:] if c != 0]
        return nonzero[-1] if nonzero else 1.0

    def expr(self, var: sympy.Symbol) -> sympy.Expr:
        return sum((c * (var - self.point) ** k for k, c in enumerate(self.coeffs)), sympy.Integer(0))


def forced_series(
    residual: sympy.Expr, var: sympy.Symbol, f: str, x0: sympy.Expr, value: sympy.Expr, max_coeffs: int = MAX_COEFFS
) -> ForcedSeries | None:
    """The coefficients forced through multiple roots at ``x0`` for the value ``y(x0) = value``, or ``None``.

    ``residual`` is one equation in ``var`` and the symbols ``f__0, f__1, f__2`` (polynomial with rational
    coefficients; anything else gives ``None``). ``None`` also when no coefficient is fixed by a multiple root.
    """
    from sciml.spec.symbolic import deriv_name

    if not (x0.is_Rational and value.is_Rational):
        return None
    state = [sympy.Symbol(deriv_name(f, k)) for k in range(3)]
    try:
        poly = sympy.Poly(residual, var, *state, domain=QQ)
    except (sympy.PolynomialError, sympy.CoercionFailed, sympy.GeneratorsNeeded):
        return None
    n_orders = 2 * max_coeffs + 2
    n_coeffs = n_orders + 2  # a_j enters the orders >= j - 2 (through y'')
    gens = ["t", *(f"a{k}" for k in range(1, n_coeffs + 1))]
    R, t, *a = ring(",".join(gens), QQ)

    def trunc(p):
        return R({m: c for m, c in p.items() if m[0] <= n_orders})

    def d(p):
        return R({(m[0] - 1, *m[1:]): c * m[0] for m, c in p.items() if m[0] > 0})

    y = R(QQ(int(value.p), int(value.q))) + sum(a[k - 1] * t**k for k in range(1, n_coeffs + 1))
    vals = [t + R(QQ(int(x0.p), int(x0.q))), y, d(y), d(d(y))]
    powers: dict[tuple[int, int], object] = {}

    def power(i: int, e: int):
        if (i, e) not in powers:
            powers[(i, e)] = R(1) if e == 0 else trunc(power(i, e - 1) * vals[i])
        return powers[(i, e)]

    total = R(0)
    for mon, coeff in poly.terms():
        term = R(coeff)
        for i, e in enumerate(mon):
            if e:
                term = trunc(term * power(i, e))
        total += term
    syms = R.symbols  # sympy symbols t, a1, a2, ...
    by_order: dict[int, dict] = {}
    for m, c in total.items():
        by_order.setdefault(m[0], {})[(0, *m[1:])] = c
    known: dict[int, sympy.Expr] = {}
    multiple: list[int] = []
    for n in range(n_orders + 1):
        cn = R(by_order.get(n, {})).as_expr()
        cn = sympy.expand(cn.subs({syms[k]: v for k, v in known.items()}))
        if cn == 0:
            continue
        free = sorted(int(s.name[1:]) for s in cn.free_symbols)
        k = len(known) + 1
        if free != [k]:
            break  # inconsistent (no unknown), a_k free (with higher ones), or a_k never alone
        roots = {r: m for r, m in sympy.roots(sympy.Poly(cn, syms[k])).items() if r.is_real}
        if len(roots) != 1:
            break  # several branches (or none): the residual chooses
        ((root, mult),) = roots.items()
        known[k] = root
        if mult > 1:
            multiple.append(k)
        if len(known) == max_coeffs:
            break
    if not multiple:
        return None
    m = max(multiple)
    return ForcedSeries(f, x0, (value, *(known[k] for k in range(1, m + 1))))
