r"""Exact Michel (relativistic Bondi) accretion of a polytrope onto a Schwarzschild black hole.

Steady, spherical, adiabatic inflow of a perfect fluid with :math:`P = K\rho_0^\Gamma` (rest-mass density
:math:`\rho_0`, specific enthalpy :math:`h = 1 + \frac{\Gamma}{\Gamma-1} K\rho_0^{\Gamma-1}`, sound speed
:math:`a^2 = \Gamma P/(\rho_0 h)`), :math:`f = 1 - 2M/r`, inflow speed :math:`u = -u^r > 0`. Two first
integrals hold along the flow:

.. math::

    C_1 = \rho_0\, u\, r^2 \quad\text{(mass flux)}, \qquad C_2 = h \sqrt{f + u^2} \quad\text{(Bernoulli)} .

The transonic solution passes through the sonic point :math:`r_c`, where

.. math:: u_c^2 = \frac{M}{2 r_c}, \qquad a_c^2 = \frac{u_c^2}{1 - 3u_c^2} = \frac{M}{2r_c - 3M},

which fixes :math:`\rho_c` from the equation of state. At each radius :math:`\rho_0` is a root of

.. math:: F(\rho) = h(\rho)^2 \left(f + \frac{C_1^2}{\rho^2 r^4}\right) - C_2^2 ,

which has two roots: the larger (subsonic) one is taken for :math:`r > r_c`, the smaller (supersonic) one
for :math:`r < r_c`. The velocity measured by static observers is :math:`v = u/\sqrt{f + u^2}`.

The roots merge at :math:`r_c` (a saddle of :math:`F(r, \rho)`), where plain root finding loses half the
digits. Within :math:`|r - r_c| < 0.05\,r_c` the solver therefore uses the Taylor series of the transonic
solution about the sonic point instead, obtained from the ODEs (see :func:`sonic_series`), which is
accurate to ~1e-13 there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq, minimize_scalar

from sciml.errors import SciMLError, UsageError


@dataclass(frozen=True)
class Michel:
    r"""Exact transonic Michel flow for black-hole mass ``M``, polytrope ``K``, ``gamma`` and sonic radius ``r_c``.

    Attributes (derived)
    --------------------
    rho_c, u_c, a2_c, C1, C2 : the sonic-point density, inflow speed, squared sound speed and the two
    conserved quantities.
    """

    M: float = 1.0
    gamma: float = 4.0 / 3.0
    K: float = 0.1
    r_c: float = 40.5

    def __post_init__(self) -> None:
        if not (self.M > 0 and self.K > 0 and 1.0 < self.gamma <= 2.0):
            raise UsageError(f"Michel flow needs M > 0, K > 0 and 1 < gamma <= 2 (got {self})")
        r_min = 0.5 * (self.M / (self.gamma - 1.0) + 3.0 * self.M)
        if not self.r_c > r_min:
            raise UsageError(
                f"sonic radius r_c={self.r_c} must exceed (M/(gamma-1) + 3M)/2 = {r_min:g}: closer in, the sound "
                "speed a_c^2 = M/(2 r_c - 3M) would reach the polytrope's limit gamma - 1"
            )

    # --- sonic point and invariants -------------------------------------------------------------------
    @property
    def u_c(self) -> float:
        return math.sqrt(self.M / (2.0 * self.r_c))

    @property
    def a2_c(self) -> float:
        return self.M / (2.0 * self.r_c - 3.0 * self.M)

    @property
    def rho_c(self) -> float:
        r"""From :math:`a^2 = \Gamma\theta/(1 + \Gamma\theta/(\Gamma-1))`, :math:`\theta = K\rho^{\Gamma-1}`."""
        g, a2 = self.gamma, self.a2_c
        theta = a2 * (g - 1.0) / (g * (g - 1.0 - a2))
        return (theta / self.K) ** (1.0 / (g - 1.0))

    @property
    def C1(self) -> float:
        return self.rho_c * self.u_c * self.r_c**2

    @property
    def C2(self) -> float:
        f = 1.0 - 2.0 * self.M / self.r_c
        return float(self.enthalpy(self.rho_c)) * math.sqrt(f + self.u_c**2)

    # --- equation of state ----------------------------------------------------------------------------
    def enthalpy(self, rho):
        g = self.gamma
        return 1.0 + g / (g - 1.0) * self.K * rho ** (g - 1.0)

    def sound_speed2(self, rho):
        r""":math:`a^2 = \Gamma K \rho^{\Gamma-1} / h`."""
        return self.gamma * self.K * rho ** (self.gamma - 1.0) / self.enthalpy(rho)

    def velocity(self, r, rho):
        r"""Static-observer velocity :math:`v = u/\sqrt{f+u^2}` with :math:`u = C_1/(\rho r^2)`."""
        u = self.C1 / (rho * r * r)
        return u / np.sqrt(1.0 - 2.0 * self.M / r + u * u)

    def rho_at_infinity(self) -> float:
        r""":math:`\rho_\infty` from :math:`h(\rho_\infty) = C_2`."""
        g = self.gamma
        return ((self.C2 - 1.0) * (g - 1.0) / (g * self.K)) ** (1.0 / (g - 1.0))

    # --- the exact profile ----------------------------------------------------------------------------
    def density(self, r: np.ndarray | float) -> np.ndarray:
        """Rest-mass density of the transonic solution at radii ``r > 2M``."""
        ra = np.asarray(r, dtype=float)
        if np.any(ra <= 2.0 * self.M):
            raise UsageError(f"the Michel solution is defined outside the horizon, r > 2M = {2 * self.M}")
        flat = ra.ravel()
        out = np.empty_like(flat)
        coef = sonic_series(self)
        window = 0.05 * self.r_c
        for i, ri in enumerate(flat):
            if abs(ri - self.r_c) < window:
                out[i] = np.polynomial.polynomial.polyval(ri - self.r_c, coef[0])
            else:
                out[i] = self._root(float(ri))
        return out.reshape(ra.shape)

    def profile(self, r: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """``(rho0, v)`` at radii ``r``."""
        rho = self.density(r)
        return rho, self.velocity(np.asarray(r, dtype=float), rho)

    def _root(self, r: float) -> float:
        f = 1.0 - 2.0 * self.M / r
        c1, c2 = self.C1, self.C2

        def F(logrho: float) -> float:
            rho = math.exp(logrho)
            return float(self.enthalpy(rho)) ** 2 * (f + (c1 / (rho * r * r)) ** 2) - c2 * c2

        # F -> +inf at both ends (h grows, the flux term grows); its minimum separates the two roots
        lc = math.log(self.rho_c)
        res = minimize_scalar(F, bracket=(lc - 1.0, lc + 1.0), tol=1e-12)
        lmin = float(res.x)
        if F(lmin) >= 0.0:
            raise SciMLError(f"Michel root finding failed at r={r}: no real root (minimum of F {F(lmin):.3g})")
        if r > self.r_c:  # subsonic: larger density
            hi = lmin + 1.0
            while F(hi) < 0.0:
                hi += 1.0
            lo_end = brentq(F, lmin, hi, xtol=1e-15, rtol=1e-15, maxiter=500)
        else:  # supersonic: smaller density
            lo = lmin - 1.0
            while F(lo) < 0.0:
                lo -= 1.0
            lo_end = brentq(F, lo, lmin, xtol=1e-15, rtol=1e-15, maxiter=500)
        return math.exp(lo_end)


def rhs(flow: Michel, r, rho, v):
    r"""The two ODEs multiplied through by their vanishing denominator :math:`N = r(r-2M)(v^2-a^2)`.

    .. math::

        N\rho_0' = -\rho_0\,[(2r - 3M)v^2 - M], \qquad
        N v' = v(1 - v^2)\,[(2r - 3M)a^2 - M] .

    Returns ``(N, num_rho, num_v)`` so that :math:`N\rho_0' - \text{num}_\rho = 0` and likewise for ``v``.
    Works with numpy arrays and torch tensors.
    """
    M = flow.M
    a2 = flow.sound_speed2(rho)
    n = r * (r - 2.0 * M) * (v * v - a2)
    return n, -rho * ((2.0 * r - 3.0 * M) * v * v - M), v * (1.0 - v * v) * ((2.0 * r - 3.0 * M) * a2 - M)


def sonic_series(flow: Michel, order: int = 14) -> np.ndarray:
    r"""Taylor coefficients of :math:`(\rho_0, v)` about :math:`r_c` for the transonic branch.

    Built order by order from the two ODEs :math:`N\rho_0' = n_\rho`, :math:`N v' = n_v` on truncated
    power series in :math:`t = r - r_c`: since :math:`N(r_c) = 0`, the equations at order :math:`t^j`
    (:math:`j \ge 2`) are affine in the order-:math:`j` coefficients. The first-order coefficients
    solve a quadratic (the two crossing branches); the transonic one has :math:`\rho_0' < 0` and
    :math:`v' < 0` (inflow accelerates inwards).

    Returns an array of shape ``(2, order + 1)``.
    """
    rc, rho_c = flow.r_c, flow.rho_c
    v_c = math.sqrt(flow.a2_c)
    length = order + 2

    def residuals(cr: np.ndarray, cv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return _series_odes(flow, rc, cr, cv, length)

    cr = np.zeros(length)
    cv = np.zeros(length)
    cr[0], cv[0] = rho_c, v_c
    # order 0 is a quadratic in (rho', v'): find both roots by a 1-D scan of the slope ratio
    first = _first_order(flow, residuals, cr, cv)
    cr[1], cv[1] = first
    for j in range(2, order + 1):
        # N vanishes at r_c, so the order-j equations first see the order-j coefficients, affinely; the
        # 2x2 slope matrix depends on the order-0/1 coefficients only: probe it on a two-term series, so that
        # it is not the difference of two large residuals
        cr[j] = cv[j] = 0.0
        e0 = np.array([x[j] for x in residuals(cr, cv)])
        sr, sv = np.zeros(length), np.zeros(length)
        sr[:2], sv[:2] = cr[:2], cv[:2]
        base = np.array([x[j] for x in residuals(sr, sv)])
        cols = []
        for which in (sr, sv):
            which[j] = 1.0
            cols.append(np.array([x[j] for x in residuals(sr, sv)]) - base)
            which[j] = 0.0
        cr[j], cv[j] = np.linalg.solve(np.column_stack(cols), -e0)
    return np.vstack([cr[: order + 1], cv[: order + 1]])


def _series_odes(flow: Michel, rc: float, cr: np.ndarray, cv: np.ndarray, length: int):
    """Coefficients of ``N rho' - num_rho`` and ``N v' - num_v`` on truncated series (t = r - r_c)."""
    M, g, K = flow.M, flow.gamma, flow.K

    def mul(a, b):
        return np.convolve(a, b)[:length]

    def powser(a, p):  # a^p for a series with a[0] > 0, via the J.C.P. Miller recurrence
        out = np.zeros(length)
        out[0] = a[0] ** p
        for n in range(1, length):
            k = np.arange(1, n + 1)
            out[n] = np.sum(((p + 1.0) * k - n) * a[k] * out[n - k]) / (n * a[0])
        return out

    def recip(a):
        return powser(a, -1.0)

    r = np.zeros(length)
    r[0], r[1] = rc, 1.0
    one = np.zeros(length)
    one[0] = 1.0
    theta = K * powser(cr, g - 1.0)
    h = one + g / (g - 1.0) * theta
    a2 = g * mul(theta, recip(h))
    vv = mul(cv, cv)
    n = mul(mul(r, r - 2.0 * M * one), vv - a2)
    k = np.arange(length, dtype=float)
    dr = np.zeros(length)
    dr[:-1] = k[1:] * cr[1:]
    dv = np.zeros(length)
    dv[:-1] = k[1:] * cv[1:]
    twor3m = 2.0 * r - 3.0 * M * one
    num_r = -mul(cr, mul(twor3m, vv) - M * one)
    num_v = mul(mul(cv, one - vv), mul(twor3m, a2) - M * one)
    return mul(n, dr) - num_r, mul(n, dv) - num_v


def _first_order(flow: Michel, residuals, cr, cv) -> tuple[float, float]:
    """Slopes of the transonic branch at :math:`r_c` (order-1 part of both equations, quadratic)."""
    # Order t^1 of N rho' - num_rho: N starts at order 1 (N_1 t), so N_1 rho'_c = num_rho_1, where both sides
    # depend linearly on (rho'_c, v'_c) -> two quadratics. Solve them with the slope ratio s = v'/rho'.
    from scipy.optimize import root

    def eqs(z):
        pr, pv = cr.copy(), cv.copy()
        pr[1], pv[1] = z
        er, ev = residuals(pr, pv)
        return [er[1], ev[1]]

    # start from the Bondi-like guess: rho ~ r^{-3/2}, v ~ r^{-1/2}
    guess = [-1.5 * flow.rho_c / flow.r_c, -0.5 * math.sqrt(flow.a2_c) / flow.r_c]
    z = root(eqs, guess, method="hybr", options={"xtol": 1e-15}).x
    scale = np.abs(eqs(np.asarray(guess) * 1.5)).max()
    if not (np.abs(eqs(z)).max() < 1e-12 * scale and z[0] < 0 and z[1] < 0):
        raise SciMLError(f"Michel sonic series: transonic slopes not found ({z}, residual {eqs(z)})")
    return float(z[0]), float(z[1])
