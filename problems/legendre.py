"""Legendre's equation on [-1, 1], regular at both singular ends (solution: the Legendre polynomial P_l)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy.special import eval_legendre

from sciml.errors import UsageError
from sciml.pinn.problem import AbstractProblem, Singularity
from sciml.problem import Parameter


class Legendre(AbstractProblem):
    """Legendre's equation, written without dividing by its vanishing leading coefficient:

    .. math::

        (1 - x^2)\\, y'' - 2x\\, y' + l(l+1)\\, y = 0, \\qquad x \\in [-1, 1], \\qquad y(1) = 1.

    Both ends are regular singular points with exponents (0, 0): the second solution :math:`Q_l` grows like
    :math:`\\log(1 \\mp x)`. At :math:`x = \\pm 1` the residual reduces to :math:`\\mp 2 y' + l(l+1) y = 0`, the
    regularity relation, which the engine imposes as the terms ``regularity@x=-1`` and ``regularity@x=1``.
    The normalisation is hard: :math:`y = 1 + (1 - x) N(x)`. A solution regular at both ends exists only for
    integer :math:`l`, and then it is :math:`P_l`.
    """

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
        ),
    )
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

    def trial(self, x, nn, u):
        return 1 + (1 - x) * nn

    def singularities(self) -> tuple[Singularity, ...]:
        return (
            Singularity(-1.0, description="2 y'(-1) + l(l+1) y(-1) = 0"),
            Singularity(1.0, description="-2 y'(1) + l(l+1) y(1) = 0"),
        )

    def reference_solution(self, x: np.ndarray) -> np.ndarray:
        return eval_legendre(self.l, np.asarray(x, dtype=float))[:, None]
