"""Legendre's equation on [-1, 1], regular at both singular ends (solution: the Legendre polynomial P_l)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy.special import eval_legendre

from sciml.errors import UsageError
from sciml.pinn.problem import AbstractProblem, Singularity
from sciml.problem import Parameter

L_TARGET_MAX = 20
L_SMALL = 4  # up to this degree the engine defaults and the plain (1 - x) factor suffice
L_TARGET_WHY = (
    "P_l has l zeros, crowded to spacing ~1/l^2 near x = +-1; the error of the default solve grows with l "
    "(9.4e-9 at l = 5, 5.9e-8 at l = 20) and so does its cost, and it was measured only up to l = 20 "
    "(bench/pinn_ranges.py)"
)


class Legendre(AbstractProblem):
    """Legendre's equation, written without dividing by its vanishing leading coefficient:

    .. math::

        (1 - x^2)\\, y'' - 2x\\, y' + l(l+1)\\, y = 0, \\qquad x \\in [-1, 1], \\qquad y(1) = 1.

    Both ends are regular singular points with exponents (0, 0): the second solution :math:`Q_l` grows like
    :math:`\\log(1 \\mp x)`. At :math:`x = \\pm 1` the residual reduces to :math:`\\mp 2 y' + l(l+1) y = 0`, the
    regularity relation, which the engine imposes as the terms ``regularity@x=-1`` and ``regularity@x=1``.
    The normalisation is hard,

    .. math::

        y = 1 + \\left(1 - e^{-\\kappa (1 - x)}\\right) N(x), \\qquad \\kappa = l(l+1)/2 \\quad (l \\ge 5),

    and a solution regular at both ends exists only for integer :math:`l`: then it is :math:`P_l`.

    **Accuracy target**: relative L2 error :math:`\\le 10^{-7}` against ``eval_legendre`` for
    :math:`l = 0 \\dots 20` with the default solve (``bench/pinn_ranges.py``); above 20 the solve runs with a
    warning. What makes high :math:`l` hard, and what is done about it:

    * *the normalisation factor*. With :math:`y = 1 + (1 - x)N` the network must represent
      :math:`N = (P_l - 1)/(1 - x)`, which has a peak of height :math:`P_l'(1) = l(l+1)/2` and width
      :math:`\\sim 2/l^2` at :math:`x = 1` (at :math:`l = 20` no setting we tried got below 50 % error). The factor
      :math:`1 - e^{-\\kappa(1-x)}` falls off on the same scale as :math:`P_l`, with the regular slope
      (:math:`\\kappa = P_l'(1)`), so :math:`N \\to -1` at :math:`x = 1` and :math:`N \\approx P_l - 1` inside:
      an O(1) function. Up to :math:`l = 4` the factor stays :math:`1 - x` (the peak is at most 10 there, and
      the default solve then reaches 1e-11 and below in a few seconds).
    * *oscillations*. :math:`P_l` has :math:`l` zeros, spaced :math:`\\sim \\pi/l` in the middle and
      :math:`\\sim 1/l^2` near the ends. The default network starts smooth (first-layer slopes
      :math:`\\lesssim 1`), and Levenberg-Marquardt (which does the work; Adam barely moves the error here) did
      not find the oscillations in 300 steps. :meth:`resolution` therefore asks, from :math:`l = 5`, for one wide
      tanh layer whose units start at Chebyshev points with slopes matched to the node spacing
      (``network.first_layer: chebyshev``), about three collocation points per network parameter of the first
      layer (so the fit is over-determined and the residual between points is controlled too), and more
      Levenberg-Marquardt steps; all grow with :math:`l`.
    * float64 is needed throughout (the residual is :math:`\\sim l^4` times the error near the ends).
    """

    # parameters, set as attributes by AbstractProblem.__init__
    l: int

    name = "legendre"
    summary = "Legendre's equation (1-x^2)y'' - 2xy' + l(l+1)y = 0, regular at x = +-1 (y = P_l)"
    equation = "(1 - x^2) y'' - 2 x y' + l (l + 1) y = 0   on [-1, 1],   y(1) = 1"
    parameters = (
        Parameter(
            "l",
            3,
            low=0,
            high=40,
            description="degree (an integer: only then is a solution regular at both ends)",
            why="a solution regular at both x = -1 and x = 1 exists only for l = 0, 1, 2, ...",
            target_high=L_TARGET_MAX,
            target_why=L_TARGET_WHY,
        ),
    )
    accuracy_target = "relative L2 error <= 1e-7 against scipy.special.eval_legendre, for l = 0 ... 20"
    singular_points = "x = -1 and x = 1 (regular singular, exponents 0, 0): regularity -+2y' + l(l+1)y = 0"
    reference = "scipy.special.eval_legendre(l, x) (exact polynomial evaluation in float64)"
    reference_accuracy = 1e-14

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> None:
        l = params["l"]
        if not float(l).is_integer():
            raise UsageError(
                f"legendre: l={l:g} is not an integer; for non-integer l no solution is regular at both x = -1 "
                "and x = 1 (the one regular at x = 1 diverges like log(1 + x) at x = -1), so there is nothing to "
                "solve for. Use l = 0, 1, 2, ..."
            )

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.l = int(self.l)
        self.params["l"] = self.l

    def domain(self) -> tuple[float, float]:
        return (-1.0, 1.0)

    def residual(self, x, y, u):
        lam = self.l * (self.l + 1)
        return ((1 - x**2) * y.d(0, 2) - 2 * x * y.d(0, 1) + lam * y(0),)

    @classmethod
    def resolution(cls, params: Mapping[str, Any]) -> Mapping[str, Any]:
        """Network width, collocation count and Levenberg-Marquardt steps from the degree ``l``.

        Up to ``l = 4`` the engine defaults reach errors of 1e-11 and below in a few seconds: nothing is
        changed. From ``l = 5``: one tanh layer of ``64 + 6 l`` units with the Chebyshev start, ``3 (64 + 6 l) + 16``
        Chebyshev collocation points, no Adam and ``300 + 25 l`` Levenberg-Marquardt steps (at ``l = 20``:
        184 units, 568 points, 800 steps). With ``48 + 4 l`` units the error was 1.2e-7 at ``l = 12`` and 1.1e-7 at
        ``l = 15``.
        """
        l = int(params.get("l", cls.parameters[0].default))
        if l <= L_SMALL:
            return {}
        width = 64 + 6 * l
        return {
            "network": {"hidden": (width,), "first_layer": "chebyshev"},
            "collocation": {"n_points": 3 * width + 16, "distribution": "chebyshev"},
            "adam": {"steps": 0},
            "lm": {"max_iter": 300 + 25 * l},
        }

    def trial(self, x, nn, u):
        if self.l <= L_SMALL:
            # the peak l(l+1)/2 <= 10 of N is harmless here, and this factor lets the default network reach
            # 1e-11..1e-16 in a few seconds (the exponential one: 1e-9..1e-16 in ~20 s)
            return 1 + (1 - x) * nn
        kappa = 0.5 * self.l * (self.l + 1)
        return 1 + (1 - (-kappa * (1 - x)).exp()) * nn  # tensor method: no torch import at module level

    def singularities(self) -> tuple[Singularity, ...]:
        return (
            Singularity(-1.0, description="2 y'(-1) + l(l+1) y(-1) = 0"),
            Singularity(1.0, description="-2 y'(1) + l(l+1) y(1) = 0"),
        )

    def reference_solution(self, x: np.ndarray) -> np.ndarray:
        return eval_legendre(self.l, np.asarray(x, dtype=float))[:, None]
