"""Solver configuration of the PINN engine (frozen dataclasses; YAML via :mod:`sciml.config`).

Precedence: these defaults < the problem's ``solver_defaults`` < its ``resolution(params)`` < ``--config FILE`` <
command-line flags.
Strings that name strategies (``weighting.scheme``) are resolved into objects once, in
:func:`sciml.pinn.weighting.make_weighting`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from sciml.config import from_dict, to_dict

Distribution = Literal["chebyshev", "uniform", "pseudo", "LHS", "Halton", "Hammersley", "Sobol"]


@dataclass(frozen=True)
class NetworkConfig:
    """Fully connected network (DeepXDE ``FNN``, or ``PFNN`` with one sub-network per output).

    ``first_layer`` chooses how the first layer starts: ``initializer`` (DeepXDE's ``initializer``, zero
    biases: every first-layer unit :math:`\\tanh(w\\xi)` switches at :math:`\\xi = 0` with a slope
    :math:`|w| \\lesssim 1`, so the network starts as a smooth, nearly polynomial function of low degree) or
    ``chebyshev``: unit :math:`j` of :math:`n` is :math:`\\tanh(\\pm s (\\xi - c_j)/\\Delta_j)` with centres at
    the Chebyshev points :math:`c_j = -\\cos(\\pi (j + 1/2)/n)` of the mapped domain, :math:`\\Delta_j` their local
    spacing and :math:`s` = ``first_layer_slope``: the units resolve features down to the node spacing
    (:math:`\\sim 1/n^2` at the ends), which solutions with many oscillations need (Legendre at high degree).
    """

    hidden: tuple[int, ...] = (24, 24)
    activation: str = "tanh"
    initializer: str = "Glorot normal"
    parallel: bool = False
    first_layer: Literal["initializer", "chebyshev"] = "initializer"
    first_layer_slope: float = 1.0

    def __post_init__(self) -> None:
        if not self.hidden or any(h < 1 for h in self.hidden):
            raise ValueError(f"network.hidden must be positive layer widths, got {self.hidden}")
        if self.first_layer not in ("initializer", "chebyshev"):
            raise ValueError(f"network.first_layer must be 'initializer' or 'chebyshev', got {self.first_layer!r}")
        if not (self.first_layer_slope > 0 and math.isfinite(self.first_layer_slope)):
            raise ValueError(f"network.first_layer_slope must be > 0, got {self.first_layer_slope}")


@dataclass(frozen=True)
class CollocationConfig:
    """Collocation points; the singular points are always added, also after resampling.

    ``chebyshev`` are the Gauss-Lobatto points :math:`x_j = -\\cos(\\pi j/(n-1))` mapped to the domain (they
    cluster near the ends, where singular points usually sit); the others are DeepXDE samplers.
    ``resample_every`` redraws the points every so many Adam steps with DeepXDE's pseudo-random sampler
    (0: never); ``rar_points`` adds that many points of largest residual from a dense candidate set at the end of
    the Adam stage (residual-based adaptive refinement).
    """

    n_points: int = 64
    distribution: Distribution = "chebyshev"
    resample_every: int = 0
    rar_points: int = 0

    def __post_init__(self) -> None:
        if self.n_points < 2:
            raise ValueError(f"collocation.n_points must be >= 2, got {self.n_points}")
        if self.resample_every < 0 or self.rar_points < 0:
            raise ValueError("collocation.resample_every and collocation.rar_points must be >= 0")


@dataclass(frozen=True)
class WeightingConfig:
    """Adaptive loss weighting (see :mod:`sciml.pinn.weighting` for the update rules).

    ``initial`` sets starting (or, for ``fixed``, permanent) weights by term name; terms not named start at 1.
    ``alpha`` is the moving-average factor (LRA, grad-norm, NTK: :math:`\\lambda \\leftarrow \\alpha\\lambda +
    (1-\\alpha)\\hat\\lambda`; ReLoBRaLo: its :math:`\\alpha`), ``temperature`` the softmax temperature
    (SoftAdapt, ReLoBRaLo), ``rho`` ReLoBRaLo's expected look-back probability.
    """

    scheme: str = "fixed"  # a name of sciml.pinn.weighting.WEIGHTINGS
    update_every: int = 10
    alpha: float = 0.9
    temperature: float = 0.1
    rho: float = 0.999
    initial: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from sciml.pinn.weighting import WEIGHTINGS  # the registry (it imports this module only for types)

        if self.scheme not in WEIGHTINGS:
            raise ValueError(f"weighting.scheme {self.scheme!r} is unknown (valid: {', '.join(WEIGHTINGS)})")
        if self.update_every < 1:
            raise ValueError(f"weighting.update_every must be >= 1, got {self.update_every}")
        if not 0.0 <= self.alpha < 1.0:
            raise ValueError(f"weighting.alpha must be in [0, 1), got {self.alpha}")
        if not self.temperature > 0:
            raise ValueError(f"weighting.temperature must be > 0, got {self.temperature}")
        if not 0.0 <= self.rho <= 1.0:
            raise ValueError(f"weighting.rho must be in [0, 1], got {self.rho}")
        if any(not (w >= 0 and math.isfinite(w)) for w in self.initial.values()):
            raise ValueError(f"weighting.initial weights must be finite and >= 0, got {self.initial}")


@dataclass(frozen=True)
class AdamConfig:
    """First stage: Adam with exponential decay ``lr * decay**(step/1000)``; adaptive weights are updated here."""

    steps: int = 200
    lr: float = 1e-3
    decay: float = 0.9

    def __post_init__(self) -> None:
        if self.steps < 0 or not self.lr > 0 or not 0 < self.decay <= 1:
            raise ValueError(f"adam needs steps >= 0, lr > 0, 0 < decay <= 1; got {self}")


@dataclass(frozen=True)
class LBFGSConfig:
    """Second stage: ``torch.optim.LBFGS`` (strong Wolfe line search) with the weights frozen."""

    max_iter: int = 0
    history: int = 100

    def __post_init__(self) -> None:
        if self.max_iter < 0 or self.history < 1:
            raise ValueError(f"lbfgs needs max_iter >= 0 and history >= 1; got {self}")


@dataclass(frozen=True)
class LMConfig:
    """Third stage: Levenberg-Marquardt on the weighted residual vector (exact Jacobian), weights frozen.

    Solves :math:`(J J^T + \\mu I) s = r`, step :math:`-J^T s` (the residual-space form: there are fewer
    residuals than network parameters); :math:`\\mu` shrinks after an accepted step and grows after a rejected
    one. At the end (``final_linear_solve``) the output layer is replaced by its exact least-squares solution
    :math:`\\min_c \\|\\rho + J_c\\,\\delta c\\|` (exact when the problem is linear in the output layer, a
    Gauss-Newton step otherwise; kept only if the loss decreases): a variable-projection step that lowered the
    Legendre error by one to two orders of magnitude in our runs. Every ``probe_every`` steps the same solve is
    tried on the side (taking it every step stalled the iteration): the best probe is returned if it beats the
    final iterate, and training stops once a probe reaches ``target_loss``.
    """

    max_iter: int = 300
    mu: float = 1e-3
    probe_every: int = 5
    final_linear_solve: bool = True

    def __post_init__(self) -> None:
        if self.max_iter < 0 or not self.mu > 0:
            raise ValueError(f"lm needs max_iter >= 0 and mu > 0; got {self}")


@dataclass(frozen=True)
class SolverConfig:
    """Everything that defines a PINN solve besides the problem and its parameters."""

    network: NetworkConfig = field(default_factory=NetworkConfig)
    collocation: CollocationConfig = field(default_factory=CollocationConfig)
    weighting: WeightingConfig = field(default_factory=WeightingConfig)
    adam: AdamConfig = field(default_factory=AdamConfig)
    lbfgs: LBFGSConfig = field(default_factory=LBFGSConfig)
    lm: LMConfig = field(default_factory=LMConfig)
    dtype: Literal["float64", "float32"] = "float64"
    seed: int = 0
    target_loss: float = 1e-20
    time_limit_s: float = 300.0
    eval_points: int = 2001
    history_every: int = 10

    def __post_init__(self) -> None:
        if self.eval_points < 2 or self.history_every < 1 or not self.time_limit_s > 0:
            raise ValueError("eval_points >= 2, history_every >= 1 and time_limit_s > 0 are required")


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Nested dict update: mappings merge key by key, everything else is replaced."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def build_config(*layers: Mapping[str, Any] | None) -> SolverConfig:
    """Defaults updated by each mapping in turn (problem defaults, YAML file, flags), validated."""
    data: dict[str, Any] = to_dict(SolverConfig())
    for layer in layers:
        if layer:
            data = merge(data, layer)
    return from_dict(SolverConfig, data)


def problem_layers(problem: Any, params: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The problem's own settings layers for ``params``: ``solver_defaults``, then ``resolution(params)``.

    ``problem`` is a problem class or instance; classes without the hook (plain ``ProblemSpec``) give only
    their defaults.
    """
    layers = [getattr(problem, "solver_defaults", {}) or {}]
    hook = getattr(problem, "resolution", None)
    if hook is not None:
        layers.append(hook(params) or {})
    return layers
