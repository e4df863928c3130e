r"""Black hole in Lorentz-violating gravity: the khronon/æther field on a Schwarzschild background.

In :math:`x = 2M/r` and :math:`y = -u\cdot\chi` (the æther projected on the Killing vector), with spin-0
speed :math:`c`,

.. math::

    P_1 P_2\, x^2\, y'' + c^2 y \left[-P_2 x^2 y'^2 + x^2\left(y y' + \tfrac12\right)^2 + 2P_2^2\right] = 0,
    \qquad P_2 = y^2 - 1 + x, \quad P_1 = P_2 - c^2 y^2,

on :math:`x \in [0, 2]` with :math:`y(0) = 1`. The solution must be regular at the spin-0 (sound) horizon
:math:`P_1 = 0`, whose position is part of the unknown; :math:`y = 0` is the universal horizon. The
reference is the classical solver in :mod:`sciml.problems._khronon_reference`.
"""

from __future__ import annotations

import math
from typing import ClassVar

from sciml.problem import Parameter, ProblemSpec

C_PARAMETER = Parameter(
    "c",
    2.0,
    low=1.0,
    high=math.inf,
    low_inclusive=False,
    description="spin-0 (sound) speed in units of the speed of light; c=inf gives the exact infinite-speed limit",
    why=(
        "for c <= 1 the spin-0 horizon lies at or outside the Killing horizon x=1, a different regularity "
        "branch that is not implemented; use c > 1, or c=inf for the exact limit"
    ),
)


class KhrononBH(ProblemSpec):
    """Metadata of the ``khronon-bh`` problem (the PINN formulation is added on top of it)."""

    name: ClassVar[str] = "khronon-bh"
    aliases: ClassVar[tuple[str, ...]] = ("lorentz-bh", "einstein-aether-bh")
    summary: ClassVar[str] = "æther/khronon on Schwarzschild (Lorentz-violating gravity): sound and universal horizons"
    equation: ClassVar[str] = """\
P1 P2 x^2 y'' + c^2 y [ -P2 x^2 y'^2 + x^2 (y y' + 1/2)^2 + 2 P2^2 ] = 0,
P2 = y^2 - 1 + x,  P1 = P2 - c^2 y^2,
x = 2M/r in [0, 2],  y = -u.chi,  y(0) = 1
(c = inf: the equation divided by c^2, i.e. P1 -> -y^2)"""
    parameters: ClassVar[tuple[Parameter, ...]] = (C_PARAMETER,)
    singular_points: ClassVar[str] = """\
x = 0 (spatial infinity): coefficient of y'' ~ x^6; regular solutions form the family
  y = 1 - x/2 - x^2/8 - x^3/16 + (k/2 - 5/128) x^4 + ...   (free aether charge k)
x = x_s, the spin-0 (sound) horizon P1 = 0 (y_s^2 = (x_s - 1)/(c^2 - 1)), position unknown:
  regularity B = 0 there fixes k; for c = inf it merges with the universal horizon at x = 4/3
universal horizon y = 0 at x_UH > x_s (not singular for finite c)"""
    reference: ClassVar[str] = """\
classical solver (problems/_khronon_reference.py): power series at x = 0 and at the sound horizon,
continued with DOP853 (rtol 1e-13) and matched in value and slope (Newton on k and x_s);
self-consistent to ~1e-12, agrees with the tabulated values of the reference notes to 6e-9.
c = inf: exact y = sign(4/3 - x) sqrt(1 - x + 27 x^4/256), x_s = x_UH = 4/3."""
