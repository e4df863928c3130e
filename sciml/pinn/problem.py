"""The abstract problem the PINN engine solves: an ODE system on an interval, with singular points.

How to add a problem
--------------------
Write a class in ``problems/NAME.py`` that subclasses :class:`AbstractProblem` and register it in
``pyproject.toml`` under ``[project.entry-points."sciml.problems"]`` as ``NAME = "sciml.problems.NAME:Class"``
(then ``pip install --no-deps --no-build-isolation -e .``). Problems import ``torch``/``numpy``/``scipy`` only,
never DeepXDE. The class provides:

* **metadata** (class attributes of :class:`~sciml.problem.ProblemSpec`): ``name``, ``summary``, ``equation``,
  ``parameters`` (:class:`~sciml.problem.Parameter` with valid ranges; cross-checks in ``check_params``),
  ``singular_points`` and ``reference`` (text). The engine calls ``Problem(**resolved_params)``; the base
  ``__init__`` stores them in ``self.params`` and as attributes (``self.l``).
* **domain**: :meth:`AbstractProblem.domain` returns ``(a, b)``. The network always sees ``x`` mapped to
  ``[-1, 1]``; everything the problem writes is in the physical ``x``.
* **outputs**: ``outputs = ("y",)`` by default; several unknown functions are several names
  (``("rho", "v")``) and one network with that many outputs (or ``parallel: true`` in the solver config for one
  sub-network each). ``equations`` names the components of the residual (``("mass", "euler")``).
* **the ODE, multiplied through** by its vanishing coefficients (never divided):
  :meth:`AbstractProblem.residual` ``(x, y, u)`` returns one tensor per equation. ``y`` is a :class:`Solution`:
  ``y(c)`` is output ``c`` (index or name), ``y.d(c, k)`` its ``k``-th derivative in ``x``. Write everything
  element-wise (``x`` may be a scalar tensor or a batch): the engine evaluates it point by point under
  ``torch.func.vmap`` to build exact Jacobians for its Levenberg-Marquardt stage. ``u`` maps the names of the
  trainable scalars (below) to 0-d tensors.
* **hard conditions** as an output transform: :meth:`AbstractProblem.trial` ``(x, nn, u)`` maps the raw network
  output to the solution; ``x`` has shape ``(n, 1)`` and ``nn`` shape ``(n, n_outputs)`` (slice with
  ``nn[:, c:c+1]``), the result shape ``(n, n_outputs)``, e.g. ``1 + (1 - x) * nn`` for ``y(1) = 1``.
* **soft conditions** as loss terms: :meth:`AbstractProblem.conditions` returns :class:`Condition` objects
  (a name such as ``"bc@x=-1"``, a location, and ``func(x, y, u) -> tensor`` that vanishes when the condition
  holds). The location may depend on the trainable scalars.
* **singular points** where the coefficient of the highest derivative vanishes:
  :meth:`AbstractProblem.singularities` returns :class:`Singularity` objects. The engine always keeps them in
  the collocation set (also after resampling) and adds one loss term ``"regularity@x=..."`` per point, which is
  the residual evaluated exactly there: because the equation is multiplied through, it reduces to the algebraic
  regularity relation (e.g. ``-2 y'(1) + l(l+1) y(1) = 0`` for Legendre). Give ``func`` to impose a different
  relation there. A singular point whose position is unknown (a sound horizon) gives ``x`` as a callable of
  ``u``; the point then moves with the trainable scalar during training (it is a loss term of its own, not a
  collocation point; the Jacobians include the motion of the point).
* **trainable scalars** (unknown constants, an eigenvalue, a horizon position): :meth:`AbstractProblem.unknowns`
  returns :class:`Unknown` objects; they are optimised together with the network and reported in
  ``metrics.json`` (with :meth:`AbstractProblem.reference_unknowns` as their reference values, if known).
* **reference solution**: :meth:`AbstractProblem.reference_solution` ``(x: ndarray) -> ndarray (n, n_outputs)``
  from a closed form, mpmath or a classical solver of the problem's own, with its accuracy in
  ``reference_accuracy`` (an absolute error bound used by the tests to know how far the comparison can go).
* **loss terms** are named ``residual`` (``residual[eq]`` for systems), ``regularity@...`` and the condition names;
  these names key the weights (``weighting.initial`` in the YAML) and the ``history.csv`` columns. Nonlinear
  problems work unchanged; the engine's final exact output-layer solve is then a Gauss-Newton step, kept only if
  it lowers the loss.
* **result hooks** (optional; the defaults add nothing):
  :meth:`AbstractProblem.extra_metrics` ``(x, pred) -> {name: float}`` adds problem-specific targets (errors at
  check points, horizon locations, conserved fluxes) to ``metrics.json`` (key ``extra``) and to the printed
  summary; ``x`` is :meth:`AbstractProblem.eval_grid` and ``pred`` the prediction there, shape
  ``(n, n_outputs)``. :meth:`AbstractProblem.plot_markers` ``(unknowns) -> {label: x}`` gives labelled vertical
  lines for ``solution.png`` (horizons, a sonic point), with ``unknowns`` the trained scalars as floats.
  :meth:`AbstractProblem.extra_curves` ``(x, pred) -> {label: (output name, values)}`` gives curves drawn on
  that output's panel of ``solution.png`` (a sound speed on the velocity panel).
  :meth:`AbstractProblem.result_files` ``() -> {file name: text}`` adds files to the result directory.
* **solver defaults** the problem needs (a wider net, more points): ``solver_defaults`` is a nested mapping of
  :class:`sciml.pinn.config.SolverConfig` keys, applied before the user's ``--config`` and flags.
* **resolution hook** (optional): :meth:`AbstractProblem.resolution` ``(params)`` returns settings of the same
  form that depend on the parameters (width, collocation count, steps from the polynomial degree or the number
  of oscillations); applied after ``solver_defaults`` and before ``--config`` and flags, so a key the user sets
  always wins.
* **accuracy target**: ``accuracy_target`` (one line) and, per parameter, ``target_low``/``target_high``/
  ``target_why`` on :class:`~sciml.problem.Parameter` (or an override of ``accuracy_warnings`` for
  conditions on several parameters): outside that region the solve runs with a one-line warning saying why
  the target is not expected.

Example (Legendre, abbreviated)::

    class Legendre(AbstractProblem):
        name = "legendre"
        parameters = (Parameter("l", 3, low=0, integer=True),)

        def domain(self):
            return (-1.0, 1.0)

        def residual(self, x, y, u):
            return ((1 - x**2) * y.d(0, 2) - 2 * x * y.d(0, 1) + self.l * (self.l + 1) * y(0),)

        def trial(self, x, nn, u):
            return 1 + (1 - x) * nn

        def singularities(self):
            return (Singularity(-1.0), Singularity(1.0))

        def reference_solution(self, x):
            return scipy.special.eval_legendre(self.l, x)[:, None]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np

from sciml.problem import ProblemSpec

Tensor = Any  # torch.Tensor; kept loose so that importing this module does not import torch
Location = float | Callable[[Mapping[str, Tensor]], Tensor]


class Solution(Protocol):
    """Access to the trial solution and its derivatives at the evaluation point(s)."""

    def __call__(self, c: int | str = 0) -> Tensor:
        """Output ``c`` (index or name in ``outputs``)."""
        ...

    def d(self, c: int | str = 0, k: int = 1) -> Tensor:
        """``k``-th derivative of output ``c`` with respect to the physical ``x``."""
        ...


@dataclass(frozen=True)
class Unknown:
    """A trainable scalar optimised together with the network (e.g. an unknown horizon position).

    Parameters
    ----------
    name
        Key in the ``u`` mapping passed to ``residual``/``trial``/conditions, and in ``metrics.json``.
    initial
        Starting value.
    description
        One line for humans.
    """

    name: str
    initial: float
    description: str = ""


@dataclass(frozen=True)
class Singularity:
    """A singular point of the ODE, where regularity selects the solution.

    Parameters
    ----------
    x
        Position, or a callable ``u -> 0-d tensor`` for a point that moves with the trainable scalars.
    func
        ``(x, y, u) -> tensor`` imposed to vanish there; ``None`` means the residual itself (all equations),
        which is the regularity relation when the ODE is multiplied through.
    label
        Term name suffix; default ``x=<value>`` (the term is ``regularity@<label>``).
    description
        What regularity means there (shown in the summary).
    """

    x: Location
    func: Callable[..., Any] | None = None
    label: str = ""
    description: str = ""

    def term_name(self) -> str:
        return f"regularity@{self.label or _label(self.x)}"


@dataclass(frozen=True)
class Condition:
    """A soft condition at one point: ``func(x, y, u)`` should vanish there (a loss term called ``name``)."""

    name: str
    x: Location
    func: Callable[..., Any]


def _label(x: Location) -> str:
    if callable(x):
        return "moving"
    return f"x={x:g}"


class AbstractProblem(ProblemSpec):
    """An ODE problem the PINN engine can solve (see the module docstring for how to write one)."""

    outputs: ClassVar[tuple[str, ...]] = ("y",)
    equations: ClassVar[tuple[str, ...]] = ("ode",)
    reference_accuracy: ClassVar[float] = 1e-14
    solver_defaults: ClassVar[Mapping[str, Any]] = {}

    @classmethod
    def resolution(cls, params: Mapping[str, Any]) -> Mapping[str, Any]:
        """Solver settings chosen from the (resolved) parameters, as a nested mapping of
        :class:`sciml.pinn.config.SolverConfig` keys; default: none.

        Precedence: engine defaults < ``solver_defaults`` < this < ``--config`` < command-line flags.
        """
        return {}

    def __init__(self, **params: Any) -> None:
        self.params = dict(self.resolve_params(params))
        for key, value in self.params.items():
            setattr(self, key, value)

    # -- what every problem must define ---------------------------------------------------------------
    def domain(self) -> tuple[float, float]:
        """The interval ``(a, b)`` in the physical variable."""
        raise NotImplementedError

    def residual(self, x: Tensor, y: Solution, u: Mapping[str, Tensor]) -> tuple[Tensor, ...]:
        """The ODE system multiplied through by its vanishing coefficients, one tensor per equation."""
        raise NotImplementedError

    # -- optional ------------------------------------------------------------------------------------
    def trial(self, x: Tensor, nn: Tensor, u: Mapping[str, Tensor]) -> Tensor:
        """Hard conditions: map the raw network output ``nn[..., c]`` to the solution (default: identity)."""
        return nn

    def singularities(self) -> tuple[Singularity, ...]:
        return ()

    def conditions(self) -> tuple[Condition, ...]:
        return ()

    def unknowns(self) -> tuple[Unknown, ...]:
        return ()

    def reference_solution(self, x: np.ndarray) -> np.ndarray | None:
        """Reference solution at ``x`` (shape ``(n, len(outputs))``), or ``None`` if there is none."""
        return None

    def reference_unknowns(self) -> dict[str, float]:
        """Reference values of the trainable scalars, where known."""
        return {}

    def extra_metrics(self, x: np.ndarray, pred: np.ndarray) -> dict[str, float]:
        """Problem-specific metrics of a prediction ``pred`` (shape ``(n, n_outputs)``) on ``x = eval_grid(n)``.

        Merged into ``metrics.json`` under ``extra`` and printed in the summary. Default: none.
        """
        return {}

    def plot_markers(self, unknowns: Mapping[str, float]) -> dict[str, float]:
        """Labelled vertical lines for ``solution.png`` (label -> x), given the trained scalars. Default: none."""
        return {}

    def extra_curves(self, x: np.ndarray, pred: np.ndarray) -> dict[str, tuple[str, np.ndarray]]:
        """Curves to overlay on an output's panel of ``solution.png``: label -> ``(output name, values at x)``.

        Default: none.
        """
        return {}

    def result_files(self) -> dict[str, str]:
        """Extra text files for the result directory (file name -> content), e.g. an analysis. Default: none."""
        return {}

    def eval_grid(self, n: int) -> np.ndarray:
        """Dense grid for metrics and plots: ``n`` uniform points plus every fixed singular point."""
        a, b = self.domain()
        x = np.linspace(a, b, n)
        fixed = [s.x for s in self.singularities() if not callable(s.x)]
        return np.unique(np.concatenate([x, np.asarray(fixed, dtype=float)]))

    def output_index(self, c: int | str) -> int:
        if isinstance(c, str):
            try:
                return self.outputs.index(c)
            except ValueError:
                raise KeyError(f"{self.name} has no output {c!r} (outputs: {', '.join(self.outputs)})") from None
        return int(c)

    def title(self) -> str:
        """Problem name with its parameters, e.g. ``legendre(l=3)``."""
        inner = ", ".join(f"{k}={_fmt(v)}" for k, v in self.params.items())
        return f"{self.name}({inner})"


def _fmt(v: Any) -> str:
    if isinstance(v, float) and math.isfinite(v) and v.is_integer():
        return str(int(v))
    return f"{v:g}" if isinstance(v, float) else str(v)
