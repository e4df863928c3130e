"""sympy expression -> function of a name->tensor mapping, built from torch operations only.

A small printer of our own (instead of ``sympy.lambdify``): every node becomes a closure over torch functions,
so the result is exact (no finite differences; derivatives come from autograd through these operations) and
pure, which is what ``torch.func.vmap``/``jacfwd``/``jacrev`` need for the Levenberg-Marquardt Jacobians.
Constant sub-expressions are folded to Python floats once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import sympy
import torch

from sciml.errors import UsageError

Env = Mapping[str, Any]
Compiled = Callable[[Env], Any]

_UNARY: dict[str, Callable[[Any], Any]] = {
    "exp": torch.exp,
    "log": torch.log,
    "sin": torch.sin,
    "cos": torch.cos,
    "tan": torch.tan,
    "sinh": torch.sinh,
    "cosh": torch.cosh,
    "tanh": torch.tanh,
    "asin": torch.asin,
    "acos": torch.acos,
    "atan": torch.atan,
    "asinh": torch.asinh,
    "acosh": torch.acosh,
    "atanh": torch.atanh,
    "Abs": torch.abs,
    "sign": torch.sign,
    "erf": torch.special.erf,
    "erfc": torch.special.erfc,
}


def _tensor(v: Any) -> torch.Tensor:
    return v if isinstance(v, torch.Tensor) else torch.tensor(float(v), dtype=torch.get_default_dtype())


def compile_expr(expr: sympy.Expr) -> Compiled:
    """``env -> value`` for ``expr``; ``env`` maps every free symbol's name to a tensor (or float)."""
    if not expr.free_symbols:
        value = complex(expr.evalf(17))
        if abs(value.imag) > 1e-14 * max(1.0, abs(value.real)):
            raise UsageError(f"constant {expr} is not real")
        c = float(value.real)
        return lambda env: c
    if isinstance(expr, sympy.Symbol):
        name = expr.name
        return lambda env: env[name]
    if isinstance(expr, sympy.Add):
        terms = [compile_expr(a) for a in expr.args]
        return lambda env: _sum(t(env) for t in terms)
    if isinstance(expr, sympy.Mul):
        factors = [compile_expr(a) for a in expr.args]
        return lambda env: _prod(f(env) for f in factors)
    if isinstance(expr, sympy.Pow):
        base = compile_expr(expr.base)
        e = expr.exp
        if e.is_Integer:
            n = int(e)
            return lambda env: base(env) ** n
        if e == sympy.Rational(1, 2):
            return lambda env: torch.sqrt(_tensor(base(env)))
        if e == sympy.Rational(-1, 2):
            return lambda env: torch.rsqrt(_tensor(base(env)))
        if not e.free_symbols:
            p = float(e)
            return lambda env: _tensor(base(env)) ** p
        ex = compile_expr(e)
        return lambda env: torch.pow(_tensor(base(env)), ex(env))
    name = type(expr).__name__
    if name in _UNARY and len(expr.args) == 1:
        fn, arg = _UNARY[name], compile_expr(expr.args[0])
        return lambda env: fn(_tensor(arg(env)))
    if name in ("Min", "Max"):
        args = [compile_expr(a) for a in expr.args]
        op = torch.minimum if name == "Min" else torch.maximum
        return lambda env: _fold(op, [_tensor(a(env)) for a in args])
    raise UsageError(f"function {name} in {expr} has no torch translation (supported: {', '.join(sorted(_UNARY))})")


def _sum(items):
    out = 0.0
    for v in items:
        out = out + v
    return out


def _prod(items):
    out = 1.0
    for v in items:
        out = out * v
    return out


def _fold(op, items):
    out = items[0]
    for v in items[1:]:
        out = op(out, v)
    return out
