r"""Relativistic Bondi (Michel) accretion of a polytrope onto a Schwarzschild black hole.

Steady spherical inflow, :math:`P = K\rho_0^\Gamma`, in terms of the rest-mass density :math:`\rho_0(r)`
and the velocity :math:`v(r)` measured by static observers:

.. math::

    r(r-2M)(v^2 - a^2)\,\rho_0' = -\rho_0\,[(2r - 3M)v^2 - M], \qquad
    r(r-2M)(v^2 - a^2)\,v' = v(1 - v^2)\,[(2r - 3M)a^2 - M],

with :math:`a^2 = \Gamma K\rho_0^{\Gamma-1}/h`, :math:`h = 1 + \frac{\Gamma}{\Gamma-1}K\rho_0^{\Gamma-1}`.
Both right-hand sides and the coefficient vanish at the sonic point :math:`v = a`, which selects the
transonic solution. The reference is the exact solution in :mod:`sciml.problems._bondi_reference`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

from sciml.errors import UsageError
from sciml.problem import Parameter, ProblemSpec


class Bondi(ProblemSpec):
    """Metadata of the ``bondi`` problem (the PINN formulation is added on top of it)."""

    name: ClassVar[str] = "bondi"
    aliases: ClassVar[tuple[str, ...]] = ("michel",)
    summary: ClassVar[str] = "relativistic Bondi (Michel) accretion onto a Schwarzschild black hole, transonic"
    equation: ClassVar[str] = """\
N rho' = -rho [ (2r - 3M) v^2 - M ]
N v'   = v (1 - v^2) [ (2r - 3M) a^2 - M ],     N = r (r - 2M) (v^2 - a^2)
a^2 = gamma K rho^(gamma-1) / h,  h = 1 + gamma/(gamma-1) K rho^(gamma-1),  P = K rho^gamma
r in [r_in, r_out]; rho(r_out) from the exact flow; v(r_out) NOT imposed (sonic regularity selects it)"""
    parameters: ClassVar[tuple[Parameter, ...]] = (
        Parameter("M", 1.0, low=0.0, low_inclusive=False, description="black-hole mass (G = c = 1)"),
        Parameter(
            "gamma",
            4.0 / 3.0,
            low=1.0,
            high=2.0,
            low_inclusive=False,
            description="adiabatic index of the polytrope P = K rho^gamma",
            why="gamma = 1 is isothermal (a different equation of state); gamma > 2 is acausal",
        ),
        Parameter("K", 0.1, low=0.0, low_inclusive=False, description="polytropic constant"),
        Parameter(
            "r_c", 40.5, low=0.0, low_inclusive=False, description="sonic radius (fixes rho_c, rho_inf, the flux)"
        ),
        Parameter("r_in", 20.0, low=0.0, low_inclusive=False, description="inner radius of the domain (> 2M)"),
        Parameter("r_out", 140.5, low=0.0, low_inclusive=False, description="outer radius, where rho is imposed"),
    )
    singular_points: ClassVar[str] = """\
sonic point r = r_c (v^2 = a^2 = M/(2 r_c - 3M)): both numerators and the coefficient N vanish;
  regularity picks the transonic branch and fixes v everywhere, including v(r_out)
horizon r = 2M (N = 0): outside the domain for r_in > 2M"""
    reference: ClassVar[str] = """\
exact Michel solution (problems/_bondi_reference.py): conserved mass flux rho u r^2 and Bernoulli
h sqrt(1 - 2M/r + u^2); rho by root finding (larger root outside r_c, smaller inside), Taylor series
of the transonic branch within 5% of r_c; agrees with 50-digit mpmath to ~1e-13"""

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> None:
        M, g, r_c = params["M"], params["gamma"], params["r_c"]
        r_in, r_out = params["r_in"], params["r_out"]
        r_min = 0.5 * (M / (g - 1.0) + 3.0 * M)
        if not r_c > r_min:
            raise UsageError(
                f"r_c={r_c:g} must exceed (M/(gamma-1) + 3M)/2 = {r_min:g}: closer in, the sonic-point sound speed "
                "a_c^2 = M/(2 r_c - 3M) would exceed the polytrope's limit gamma - 1"
            )
        if not 2.0 * M < r_in < r_c < r_out:
            raise UsageError(
                f"need 2M < r_in < r_c < r_out (got 2M={2 * M:g}, r_in={r_in:g}, r_c={r_c:g}, r_out={r_out:g}): "
                "the domain must lie outside the horizon and contain the sonic point"
            )
        if not math.isfinite(r_out):
            raise UsageError("r_out must be finite")
