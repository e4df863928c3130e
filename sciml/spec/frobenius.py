r"""Local analysis at a point: zeros of a coefficient in the domain, and the Frobenius exponents there.

For :math:`p\,y'' + q\,y' + r\,y = s`, a zero :math:`x_0` of :math:`p` is regular singular when
:math:`P = (x-x_0)q/p` and :math:`Q = (x-x_0)^2 r/p` are analytic there, with the indicial equation
:math:`\rho(\rho-1) + P(x_0)\rho + Q(x_0) = 0`; first order, :math:`p\,y' + r\,y = s`:
:math:`\rho = -\lim_{x\to x_0} (x-x_0) r/p`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import sympy

from sciml.spec.symbolic import exact

RHO = sympy.Symbol("rho_")


# -- zeros of x-only expressions --------------------------------------------------------------------------
def zeros(g: sympy.Expr, x: sympy.Symbol, a: float, b: float) -> list[tuple[float, str, bool]]:
    """Zeros of ``g(x)`` in ``[a, b]``: (value, exact text, exact?) — exact when sympy can solve, else numeric."""
    if g.free_symbols - {x} or g == 0:
        raise ValueError(g)
    if not g.has(x):
        return []
    try:
        sol = sympy.solveset(g, x, sympy.Interval(exact(a), exact(b)))
        if isinstance(sol, sympy.FiniteSet):
            pts = [(float(r), sympy.sstr(r), True) for r in sol if r.is_real]
            return sorted(pts)
    except (NotImplementedError, TypeError, ValueError):
        pass
    return _numeric_zeros(g, x, a, b)


def _numeric_zeros(g: sympy.Expr, x: sympy.Symbol, a: float, b: float) -> list[tuple[float, str, bool]]:
    from scipy.optimize import brentq, minimize_scalar

    f = sympy.lambdify(x, g, "numpy")
    xs = np.linspace(a, b, 4001)
    with np.errstate(all="ignore"):
        v = np.broadcast_to(np.asarray(f(xs), dtype=float), xs.shape)
    scale = max(float(np.nanmax(np.abs(v))), 1e-300)
    roots: list[float] = [float(xs[i]) for i in np.nonzero(v == 0)[0]]
    for i in np.nonzero(np.sign(v[:-1]) * np.sign(v[1:]) < 0)[0]:
        roots.append(brentq(f, xs[i], xs[i + 1], xtol=1e-15))
    av = np.abs(v)
    for k in range(1, len(xs) - 1):  # double zeros touch zero without a sign change
        if av[k] <= av[k - 1] and av[k] <= av[k + 1] and av[k] < 1e-6 * scale:
            r = minimize_scalar(
                lambda t: abs(f(t)), bounds=(xs[k - 1], xs[k + 1]), method="bounded", options={"xatol": 1e-14}
            )
            if abs(f(r.x)) < 1e-10 * scale:
                roots.append(float(r.x))
    out: list[float] = []
    for r in sorted(roots):
        if not out or abs(r - out[-1]) > 1e-9 * max(1.0, abs(r)):
            out.append(r)
    return [(r, f"{r:.12g}", False) for r in out]


# -- Frobenius ---------------------------------------------------------------------------------------------
def _value_at(expr: sympy.Expr, x: sympy.Symbol, x0: sympy.Expr) -> sympy.Expr | None:
    """Value at ``x0`` of a function analytic there, or ``None`` if it is not (a pole)."""
    expr = sympy.cancel(sympy.together(expr))
    num, den = sympy.fraction(expr)
    d0 = sympy.simplify(den.subs(x, x0))
    if d0 != 0:
        return sympy.simplify(num.subs(x, x0) / d0)
    try:
        lim = sympy.limit(expr, x, x0)
    except (NotImplementedError, ValueError):
        return None
    return lim if lim.is_finite else None


def _is_nonneg_int(e: sympy.Expr) -> bool:
    return bool(e.is_integer and e >= 0)


def frobenius(coef: list[sympy.Expr], x: sympy.Symbol, x0: sympy.Expr) -> dict[str, Any]:
    """Kind, exponents, log and branch texts at ``x0`` for :math:`\\sum_k c_k y^{(k)} = s`, order 1 or 2."""
    t = x - x0
    if len(coef) == 3:
        r, q, p = coef
        P0, Q0 = _value_at(t * q / p, x, x0), _value_at(t**2 * r / p, x, x0)
        if P0 is None or Q0 is None:
            return {"kind": "irregular singular point", "regular_ok": False}
        roots = sympy.roots(sympy.Poly(RHO**2 + (P0 - 1) * RHO + Q0, RHO))
        exps = [e for e, m in roots.items() for _ in range(m)]
    else:
        r, p = coef
        R0 = _value_at(t * r / p, x, x0)
        if R0 is None:
            return {"kind": "irregular singular point", "regular_ok": False}
        exps = [sympy.simplify(-R0)]
    exps = sorted(exps, key=lambda e: (-float(sympy.re(e)), float(sympy.im(e))))
    out: dict[str, Any] = {
        "kind": "regular singular point",
        "regular_ok": True,
        "exponents": tuple(map(sympy.sstr, exps)),
    }
    if len(exps) == 2:
        diff = sympy.simplify(exps[0] - exps[1])
        if diff == 0:
            out["log"] = "equal exponents: the second solution has a logarithm"
        elif diff.is_integer:
            out["log"] = "exponents differ by an integer: a logarithmic second solution can appear"
        else:
            out["log"] = "no logarithm (exponents do not differ by an integer)"
    analytic = [e for e in exps if _is_nonneg_int(e)]
    if not analytic:
        pos = [sympy.sstr(e) for e in exps if float(sympy.re(e)) > 0]
        out["branch"] = (
            "no exponent is a non-negative integer: no solution is analytic here except y = 0; the relation keeps "
            + (f"the vanishing branch (exponent {', '.join(pos)})" if pos else "only y = 0")
        )
    elif len(set(analytic)) == 1:  # one analytic exponent (possibly double, as for Legendre)
        m = analytic[0]
        other = [sympy.sstr(e) for e in exps if e != m]
        out["branch"] = f"analytic branch, exponent {sympy.sstr(m)}" + (
            f" (excludes the branch with exponent {other[0]})" if other else " (excludes the logarithmic one)"
        )
    else:
        out["branch"] = (
            f"both exponents ({', '.join(map(sympy.sstr, analytic))}) are non-negative integers: the "
            f"solution with exponent {sympy.sstr(analytic[0])} is analytic, the other one unless a logarithm appears; "
            "the relation removes the logarithm"
        )
    return out
