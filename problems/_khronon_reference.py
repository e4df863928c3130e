r"""Classical reference solver for the khronon/æther field on a Schwarzschild background.

The equation (``x = 2M/r``, ``y = -u\cdot\chi``, spin-0 speed ``c``), divided by :math:`c^2` so that
:math:`\epsilon = 1/c^2 = 0` is the infinite-speed limit:

.. math::

    R \equiv (\epsilon P_2 - y^2)\, P_2\, x^2\, y'' + y\,B = 0, \qquad
    B = -P_2 x^2 y'^2 + x^2 \left(y y' + \tfrac12\right)^2 + 2 P_2^2, \qquad
    P_2 = y^2 - 1 + x,

(the original form is :math:`P_1 P_2 x^2 y'' + c^2 y B = 0` with :math:`P_1 = P_2 - c^2 y^2`), on
:math:`x \in [0, 2]` with :math:`y(0) = 1`.

Two singular points matter:

* :math:`x = 0` (spatial infinity), where the coefficient of :math:`y''` vanishes like :math:`x^6`. The
  solutions regular there form a one-parameter family of power series
  :math:`y = 1 - x/2 - x^2/8 - x^3/16 + a_4 x^4 + \dots` with :math:`a_4 = -5/128 + k/2` free (the
  "æther charge" :math:`k`); every later coefficient :math:`a_n` follows from the order-:math:`x^{n+4}`
  part of :math:`R`, which is affine in :math:`a_n`.
* the sound (spin-0) horizon :math:`P_1 = 0`, i.e. :math:`y_s^2 = (x_s - 1)/(c^2 - 1)`, where the
  coefficient of :math:`y''` changes sign. A solution crosses it smoothly only if :math:`B = 0` there; this
  fixes :math:`y'(x_s)` (the negative root of a quadratic) and, order by order, a power series in
  :math:`x - x_s` whose order-:math:`n` equation is affine in the coefficient :math:`b_{n+1}`.

The solver matches the two series solutions, continued by a high-order Runge-Kutta integrator, in value
and slope at an intermediate point :math:`x_m`: two equations for the unknowns :math:`(k, x_s)`, solved by
Newton's method. A coarse shooting bisection on :math:`k` (blow-up direction at the sound horizon) gives
the starting point. The universal horizon is the root of :math:`y` beyond :math:`x_s`.

For :math:`c \to \infty` the exact solution is :math:`y = (4/3 - x)\sqrt{q(x)}`, the sign-continued
:math:`\sqrt{1 - x + 27 x^4/256}` (the square root of the quartic, which has a double root at
:math:`x = 4/3`; the smooth solution changes sign there).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
from scipy.integrate import solve_ivp
from scipy.optimize import root

from sciml.errors import SciMLError, UsageError

K_INFINITE = 27.0 / 256.0  # æther charge of the c -> infinity solution
X_UH_INFINITE = 4.0 / 3.0


def exact_infinite_speed(x: np.ndarray | float) -> np.ndarray:
    r"""The exact :math:`c = \infty` solution, continued smoothly through its universal horizon.

    .. math::

        y = \operatorname{sign}(4/3 - x)\,\sqrt{1 - x + \tfrac{27}{256} x^4}
          = (4/3 - x)\,\sqrt{\tfrac{27}{256}\left(x^2 + \tfrac83 x + \tfrac{16}{3}\right)}
    """
    x = np.asarray(x, dtype=float)
    # 1 - x + 27 x^4/256 = (x - 4/3)^2 * 27/256 * (x^2 + 8x/3 + 16/3): the factored form has no cancellation
    return (4.0 / 3.0 - x) * np.sqrt(27.0 / 256.0 * (x * x + 8.0 * x / 3.0 + 16.0 / 3.0))


def exact_infinite_speed_derivative(x: np.ndarray | float) -> np.ndarray:
    """Derivative of :func:`exact_infinite_speed`."""
    x = np.asarray(x, dtype=float)
    q = 27.0 / 256.0 * (x * x + 8.0 * x / 3.0 + 16.0 / 3.0)
    dq = 27.0 / 256.0 * (2.0 * x + 8.0 / 3.0)
    return -np.sqrt(q) + (4.0 / 3.0 - x) * dq / (2.0 * np.sqrt(q))


# ----------------------------------------------------------------------------------------------------------
# the equation, pointwise and on truncated power series


def residual(x, y, yp, ypp, eps: float):
    r"""Residual :math:`R = (\epsilon P_2 - y^2) P_2 x^2 y'' + y B` (numpy or torch arrays)."""
    p2 = y * y - 1.0 + x
    b = -p2 * x * x * yp * yp + x * x * (y * yp + 0.5) ** 2 + 2.0 * p2 * p2
    return (eps * p2 - y * y) * p2 * x * x * ypp + y * b


def _rhs(eps: float):
    def f(x, s):
        y, yp = s
        p2 = y * y - 1.0 + x
        b = -p2 * x * x * yp * yp + x * x * (y * yp + 0.5) ** 2 + 2.0 * p2 * p2
        d = (eps * p2 - y * y) * p2 * x * x
        return [yp, -y * b / d]

    return f


def _coef_d(x, y, eps):
    p2 = y * y - 1.0 + x
    return (eps * p2 - y * y) * p2 * x * x


def _series_residual(xs: np.ndarray, a: np.ndarray, eps: float) -> np.ndarray:
    """Coefficients of R for truncated power series x(t), y(t) (same length); exact below that length."""
    n = len(a)

    def mul(u, v):
        return np.convolve(u, v)[:n]

    k = np.arange(n, dtype=float)
    yp = np.zeros(n)
    yp[:-1] = k[1:] * a[1:]
    ypp = np.zeros(n)
    ypp[:-1] = k[1:] * yp[1:]
    half = np.zeros(n)
    half[0] = 0.5
    one = np.zeros(n)
    one[0] = 1.0
    x2 = mul(xs, xs)
    yy = mul(a, a)
    p2 = yy - one + xs
    b = -mul(mul(p2, x2), mul(yp, yp)) + mul(x2, mul(mul(a, yp) + half, mul(a, yp) + half)) + 2.0 * mul(p2, p2)
    return mul(mul(eps * p2 - yy, mul(p2, x2)), ypp) + mul(a, b)


def origin_series(k: float, eps: float, order: int = 24) -> np.ndarray:
    r"""Coefficients :math:`a_0..a_{order}` of the solution regular at :math:`x = 0` with charge ``k``.

    :math:`a_0..a_3 = 1, -1/2, -1/8, -1/16` are forced (double roots of the low orders),
    :math:`a_4 = -5/128 + k/2` is free, and :math:`a_n` (:math:`n \ge 5`) solves the order
    :math:`x^{n+4}` part of :math:`R`, which is affine in :math:`a_n`.
    """
    length = order + 6
    a = np.zeros(length)
    a[:5] = [1.0, -0.5, -0.125, -0.0625, -5.0 / 128.0 + 0.5 * k]
    xs = np.zeros(length)
    xs[1] = 1.0
    for n in range(5, order + 1):
        a[n] = 0.0
        r0 = _series_residual(xs, a, eps)[n + 4]
        a[n] = 1.0
        r1 = _series_residual(xs, a, eps)[n + 4]
        if r1 == r0:
            raise SciMLError(f"khronon origin series: order {n} is degenerate (k={k})")
        a[n] = -r0 / (r1 - r0)
    return a[: order + 1]


def sound_horizon_slope(xs: float, ys: float) -> float:
    r"""The regular slope at the sound horizon: the negative root of :math:`B = 0`,

    .. math:: x^2 (1 - x)\, y'^2 + x^2 y\, y' + x^2/4 + 2 P_2^2 = 0 .
    """
    p2 = ys * ys - 1.0 + xs
    qa, qb, qc = xs * xs * (1.0 - xs), xs * xs * ys, xs * xs / 4.0 + 2.0 * p2 * p2
    disc = qb * qb - 4.0 * qa * qc
    if qa >= 0.0 or disc < 0.0:
        raise SciMLError(f"no regular crossing of a sound horizon at x={xs:.6g} (needs x > 1)")
    r1 = (-qb + math.sqrt(disc)) / (2.0 * qa)
    r2 = (-qb - math.sqrt(disc)) / (2.0 * qa)
    return min(r1, r2)


def sound_horizon_series(xs: float, eps: float, order: int = 20) -> np.ndarray:
    r"""Coefficients :math:`b_n` of the solution regular at a sound horizon placed at ``xs``.

    :math:`b_0 = y_s = \sqrt{\epsilon (x_s - 1)/(1 - \epsilon)}`, :math:`b_1` from
    :func:`sound_horizon_slope`, and :math:`b_{n+1}` (:math:`n \ge 1`) solves the order-:math:`t^n`
    part of :math:`R` (:math:`t = x - x_s`), affine in it with slope :math:`(n+1)(n D_1 + F_p)`.
    """
    length = order + 3
    ys = math.sqrt(eps * (xs - 1.0) / (1.0 - eps))
    b = np.zeros(length)
    b[0] = ys
    b[1] = sound_horizon_slope(xs, ys)
    xser = np.zeros(length)
    xser[0], xser[1] = xs, 1.0
    for n in range(1, order):
        # the slope (n+1)(n D_1 + F_p) depends on b_0, b_1 only: take it from a two-term series so that it
        # is not the difference of two large residuals (the coefficients grow geometrically)
        unit = np.zeros(length)
        unit[:2] = b[:2]
        base = _series_residual(xser, unit, eps)[n]
        unit[n + 1] = 1.0
        slope = _series_residual(xser, unit, eps)[n] - base
        if abs(slope) < 1e-12 * abs(b[1]):
            raise SciMLError(f"khronon sound-horizon series: resonance at order {n} (x_s={xs})")
        b[n + 1] = 0.0
        b[n + 1] = -_series_residual(xser, b, eps)[n] / slope
    return b[: order + 1]


def _poly(coef: np.ndarray, t: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(t, dtype=float)
    val = np.polynomial.polynomial.polyval(t, coef)
    der = np.polynomial.polynomial.polyval(t, np.polynomial.polynomial.polyder(coef))
    return val, der


# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KhrononSolution:
    r"""The regular solution for one spin-0 speed :math:`c` (``math.inf`` for the exact limit).

    Attributes
    ----------
    c
        Spin-0 speed.
    k
        Æther charge: the free coefficient, :math:`a_4 = -5/128 + k/2`.
    x_sound
        Sound-horizon location :math:`P_1 = 0` (equal to :math:`x_{UH} = 4/3` for :math:`c = \infty`).
    x_uh
        Universal-horizon location :math:`y = 0`.
    y_sound, yp_sound
        :math:`y` and :math:`y'` at the sound horizon.
    """

    c: float
    k: float
    x_sound: float
    x_uh: float
    y_sound: float
    yp_sound: float
    _pieces: tuple = field(default=(), repr=False, compare=False)

    def __call__(self, x: np.ndarray | float) -> np.ndarray:
        """:math:`y(x)` for :math:`x \\in [0, 2]`."""
        return self.evaluate(x)[0]

    def derivative(self, x: np.ndarray | float) -> np.ndarray:
        """:math:`y'(x)` for :math:`x \\in [0, 2]`."""
        return self.evaluate(x)[1]

    def evaluate(self, x: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """``(y, y')`` at ``x`` (any shape), each piece evaluated where it is most accurate."""
        xa = np.asarray(x, dtype=float)
        if np.any(xa < -1e-12) or np.any(xa > 2.0 + 1e-12):
            raise UsageError("the khronon reference is defined on x in [0, 2]")
        if math.isinf(self.c):
            return exact_infinite_speed(xa), exact_infinite_speed_derivative(xa)
        flat = xa.ravel()
        y = np.empty_like(flat)
        yp = np.empty_like(flat)
        for lo, hi, fn in self._pieces:
            sel = (flat >= lo) & (flat <= hi)
            if np.any(sel):
                y[sel], yp[sel] = fn(flat[sel])
        return y.reshape(xa.shape), yp.reshape(xa.shape)


@dataclass(frozen=True)
class KhrononSolverSettings:
    """Numerical settings of :func:`solve_khronon` (the defaults give ~1e-11 accuracy; see tests)."""

    x0: float = 0.1  # end of the origin series
    x_match: float = 0.7  # matching point (below every sound horizon: x_s > 1)
    delta: float = 0.02  # half-width of the sound-horizon series window
    origin_order: int = 28
    sound_order: int = 24
    rtol: float = 1e-13
    atol: float = 1e-15


def _integrate(eps, x_start, state, x_end, settings, dense=False):
    sol = solve_ivp(
        _rhs(eps),
        (x_start, x_end),
        state,
        method="DOP853",
        rtol=settings.rtol,
        atol=settings.atol,
        dense_output=dense,
    )
    if sol.status != 0:
        raise SciMLError(f"khronon reference: integration from x={x_start} to {x_end} failed: {sol.message}")
    return sol


def _shoot_guess(eps: float, settings: KhrononSolverSettings) -> tuple[float, float]:
    r"""Coarse bisection on ``k``; returns ``(k, x_s)`` estimates.

    A too-small charge runs into the sound horizon with :math:`y' \to -\infty` (the sign of ``F`` there),
    a too-large one turns up and never reaches it.
    """

    def hit(x, s):
        y = s[0]
        return eps * (y * y - 1.0 + x) - y * y + 1e-6  # just before P1 = 0

    hit.terminal = True  # type: ignore[attr-defined]  # scipy's solve_ivp reads event attributes

    def direction(k: float) -> tuple[float, float | None]:
        a = origin_series(k, eps, settings.origin_order)
        y0, yp0 = _poly(a, settings.x0)
        sol = solve_ivp(
            _rhs(eps), (settings.x0, 2.0), [float(y0), float(yp0)], method="DOP853", rtol=1e-10, atol=1e-12, events=hit
        )
        if sol.status == 1:
            x, (y, yp) = sol.t[-1], sol.y[:, -1]
            return float(np.sign(residual(x, y, yp, 0.0, eps))), float(x)
        return float(np.sign(sol.y[0, -1])), None

    lo, hi = 0.05, 0.2  # bracket of k for every c > 1 (k decreases from ~0.125 at c->1 to 27/256)
    dlo, x_hit = direction(lo)
    if direction(hi)[0] == dlo or x_hit is None:
        raise SciMLError(f"khronon reference: no sign change of the shooting function for c={eps**-0.5:g}")
    for _ in range(30):  # ~1e-10 in k; Newton polishes
        mid = 0.5 * (lo + hi)
        dm, xm = direction(mid)
        if dm == dlo:
            lo = mid
            x_hit = xm if xm is not None else x_hit
        else:
            hi = mid
    return 0.5 * (lo + hi), x_hit


def _left(k: float, eps: float, s: KhrononSolverSettings, dense: bool = False):
    a = origin_series(k, eps, s.origin_order)
    y0, yp0 = _poly(a, s.x0)
    return a, _integrate(eps, s.x0, [float(y0), float(yp0)], s.x_match, s, dense)


def _right_start(xs: float, eps: float, s: KhrononSolverSettings, side: float):
    b = sound_horizon_series(xs, eps, s.sound_order)
    y, yp = _poly(b, side * s.delta)
    return b, [float(y), float(yp)]


def _mismatch(z: np.ndarray, eps: float, s: KhrononSolverSettings) -> np.ndarray:
    k, xs = float(z[0]), float(z[1])
    if not 1.0 < xs < 2.0 - s.delta:
        return np.array([1e3, 1e3])
    _, left = _left(k, eps, s)
    _, start = _right_start(xs, eps, s, -1.0)
    right = _integrate(eps, xs - s.delta, start, s.x_match, s)
    return left.y[:, -1] - right.y[:, -1]


def solve_khronon(c: float, settings: KhrononSolverSettings | None = None) -> KhrononSolution:
    r"""The solution regular at :math:`x = 0` and at the sound horizon, for spin-0 speed ``c > 1``.

    Parameters
    ----------
    c
        Spin-0 speed; ``math.inf`` returns the exact infinite-speed solution.
    settings
        Numerical settings (defaults: ~1e-11 accuracy away from the horizons).

    Raises
    ------
    UsageError
        ``c <= 1``: the sound horizon then lies at or outside the Killing horizon (:math:`x_s \le 1`),
        where the regular-crossing branch used here does not exist.
    """
    s = settings or KhrononSolverSettings()
    if not c > 1.0:
        raise UsageError(
            f"c={c} is not supported: for c <= 1 the spin-0 horizon sits at or outside the Killing horizon "
            "(x_s <= 1), a different branch this solver does not implement; use c > 1 or c=inf"
        )
    if math.isinf(c):
        return KhrononSolution(
            c=math.inf,
            k=K_INFINITE,
            x_sound=X_UH_INFINITE,
            x_uh=X_UH_INFINITE,
            y_sound=0.0,
            yp_sound=float(exact_infinite_speed_derivative(X_UH_INFINITE)),
        )
    eps = 1.0 / (c * c)
    k0, xs0 = _shoot_guess(eps, s)
    # the sound-horizon series converges within a radius that shrinks as c grows (x_uh - x_s ~ 1/c):
    # keep its window well inside the radius estimated by the root test on its coefficients
    bn = np.abs(sound_horizon_series(xs0, eps, s.sound_order)[8:])
    radius = float(np.min(bn[bn > 0] ** (-1.0 / np.arange(8, 8 + len(bn))[bn > 0])))
    s = replace(s, delta=min(s.delta, 0.2 * radius))
    sol = root(_mismatch, np.array([k0, xs0]), args=(eps, s), method="hybr", options={"xtol": 1e-14})
    mis = _mismatch(sol.x, eps, s)
    if not np.all(np.abs(mis) < 1e-10):
        raise SciMLError(f"khronon reference for c={c}: matching did not converge ({sol.message}, mismatch {mis})")
    k, xs = float(sol.x[0]), float(sol.x[1])

    a, left = _left(k, eps, s, dense=True)
    b, start_lo = _right_start(xs, eps, s, -1.0)
    mid = _integrate(eps, xs - s.delta, start_lo, s.x_match, s, dense=True)
    _, start_hi = _right_start(xs, eps, s, 1.0)

    def second_sound_horizon(x, st):  # a second P1 = 0 past the universal horizon would end the solution
        y = st[0]
        return eps * (y * y - 1.0 + x) - y * y

    def universal_horizon(x, st):
        return st[0]

    second_sound_horizon.terminal = True  # type: ignore[attr-defined]  # a solve_ivp event attribute
    right = solve_ivp(
        _rhs(eps),
        (xs + s.delta, 2.0),
        start_hi,
        method="DOP853",
        rtol=s.rtol,
        atol=s.atol,
        dense_output=True,
        events=[second_sound_horizon, universal_horizon],
    )
    if right.status != 0:
        raise SciMLError(f"khronon reference for c={c}: the solution past the sound horizon ends at x={right.t[-1]}")
    if len(right.t_events[1]) == 0:
        raise SciMLError(f"khronon reference for c={c}: no universal horizon (y = 0) in x < 2")
    x_uh = float(right.t_events[1][0])

    def dense(ode):
        return lambda x: tuple(ode.sol(x))

    pieces = (
        (0.0, s.x0, lambda x: _poly(a, x)),
        (s.x0, s.x_match, dense(left)),
        (s.x_match, xs - s.delta, dense(mid)),
        (xs - s.delta, xs + s.delta, lambda x: _poly(b, x - xs)),
        (xs + s.delta, 2.0, dense(right)),
    )
    return KhrononSolution(
        c=float(c), k=k, x_sound=xs, x_uh=x_uh, y_sound=float(b[0]), yp_sound=float(b[1]), _pieces=pieces
    )
