"""Adaptive loss weighting strategies (objects; the string names are resolved once, in :func:`make_weighting`).

The training loss is :math:`\\mathcal L = \\sum_i \\lambda_i L_i` over named terms. Every strategy sees the
*unweighted* term losses :math:`L_i` and, if it asks for them (``needs``), the parameter gradients
:math:`g_i = \\nabla_\\theta L_i` or the NTK diagonals, and returns new weights. Weights change only during the
Adam stage; L-BFGS and Levenberg-Marquardt keep the last ones (a moving objective breaks their curvature model).

Implemented rules (references in ``shared/reference/pinn.md`` §4.6):

* :class:`Fixed`: :math:`\\lambda_i` constant.
* :class:`LRAnnealing` (Wang, Teng, Perdikaris 2021):
  :math:`\\hat\\lambda_i = \\max_\\theta |\\nabla_\\theta L_r| / \\overline{|\\nabla_\\theta L_i|}`,
  :math:`\\lambda_i \\leftarrow \\alpha\\lambda_i + (1-\\alpha)\\hat\\lambda_i`, with the residual term
  :math:`r` as reference (:math:`\\lambda_r = 1`).
* :class:`GradNormBalance` (grad-norm balancing as in jaxpi):
  :math:`\\hat\\lambda_i = \\overline{\\|g_j\\|}_j / \\|g_i\\|`, same moving average.
* :class:`NTKTrace` (Wang, Yu, Perdikaris 2022):
  :math:`\\hat\\lambda_i = \\sum_j \\bar K_j / \\bar K_i`, :math:`\\bar K_i = \\operatorname{mean}_p
  \\|\\nabla_\\theta r_i(x_p)\\|^2` (mean diagonal of the term's NTK block), same moving average.
* :class:`SoftAdapt` (Heydari et al. 2019), on relative rates :math:`s_i = L_i(t)/L_i(t-1) - 1`:
  :math:`\\lambda = n\\,\\mathrm{softmax}(s/T)`.
* :class:`ReLoBRaLo` (Bischof & Kraus 2021): :math:`\\lambda^{bal}(t, t') = n\\,\\mathrm{softmax}_i
  (L_i(t)/(T L_i(t')))`, :math:`\\lambda \\leftarrow \\alpha[\\rho\\lambda + (1-\\rho)\\lambda^{bal}(t,0)] +
  (1-\\alpha)\\lambda^{bal}(t,t-1)`, :math:`\\rho \\sim \\mathrm{Bernoulli}(E[\\rho])`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np

from sciml.errors import UsageError

if TYPE_CHECKING:
    from sciml.pinn.config import WeightingConfig

Needs = Literal["losses", "gradients", "ntk"]


class WeightingStrategy(ABC):
    """Base class. ``update`` is called every ``update_every`` Adam steps with the unweighted term losses.

    Parameters
    ----------
    initial
        Starting weights by term name (missing terms start at 1).
    update_every
        Adam steps between updates.
    """

    name: str = ""
    needs: Needs = "losses"

    @classmethod
    def from_config(cls, cfg: WeightingConfig, seed: int = 0) -> WeightingStrategy:
        """The strategy with the settings of ``cfg`` that it uses (the base uses ``initial`` and ``update_every``)."""
        return cls(initial=cfg.initial, update_every=cfg.update_every)

    def __init__(self, initial: Mapping[str, float] | None = None, update_every: int = 10) -> None:
        self.initial = dict(initial or {})
        self.update_every = update_every
        self.weights: dict[str, float] = {}

    def start(self, names: Sequence[str]) -> dict[str, float]:
        """Reset for terms ``names``; returns the starting weights."""
        unknown = set(self.initial) - set(names)
        if unknown:
            raise UsageError(f"weighting.initial names unknown loss terms {sorted(unknown)}; terms are {list(names)}")
        self.names = list(names)
        self.weights = {n: float(self.initial.get(n, 1.0)) for n in names}
        return dict(self.weights)

    @abstractmethod
    def update(
        self,
        losses: Mapping[str, float],
        gradients: Mapping[str, np.ndarray] | None = None,
        ntk: Mapping[str, float] | None = None,
    ) -> dict[str, float]:
        """New weights from the current unweighted losses (and gradients or NTK diagonals if ``needs`` them)."""


class Fixed(WeightingStrategy):
    """Constant weights (``initial``, default 1)."""

    name = "fixed"

    def update(self, losses, gradients=None, ntk=None):
        return dict(self.weights)


class _Smoothed(WeightingStrategy):
    @classmethod
    def from_config(cls, cfg: WeightingConfig, seed: int = 0) -> WeightingStrategy:
        return cls(initial=cfg.initial, update_every=cfg.update_every, alpha=cfg.alpha)

    def __init__(self, initial=None, update_every: int = 10, alpha: float = 0.9) -> None:
        super().__init__(initial, update_every)
        self.alpha = alpha

    def _blend(self, target: Mapping[str, float]) -> dict[str, float]:
        for n, t in target.items():
            if math.isfinite(t):
                self.weights[n] = self.alpha * self.weights[n] + (1 - self.alpha) * t
        return dict(self.weights)


class LRAnnealing(_Smoothed):
    """Learning-rate annealing: max of the residual gradient over the mean of each term's gradient."""

    name = "lra"
    needs: Needs = "gradients"

    def update(self, losses, gradients=None, ntk=None):
        assert gradients is not None
        ref = self.names[0]
        gmax = float(np.max(np.abs(gradients[ref])))
        target = {ref: 1.0}
        for n in self.names[1:]:
            mean = float(np.mean(np.abs(gradients[n])))
            target[n] = gmax / mean if mean > 0 else math.nan
        return self._blend(target)


class GradNormBalance(_Smoothed):
    """Equalise the L2 norms of the weighted term gradients."""

    name = "gradnorm"
    needs: Needs = "gradients"

    def update(self, losses, gradients=None, ntk=None):
        assert gradients is not None
        norms = {n: float(np.linalg.norm(gradients[n])) for n in self.names}
        mean = float(np.mean(list(norms.values())))
        return self._blend({n: mean / g if g > 0 else math.nan for n, g in norms.items()})


class NTKTrace(_Smoothed):
    """Weights from the mean NTK diagonal of each term."""

    name = "ntk"
    needs: Needs = "ntk"

    def update(self, losses, gradients=None, ntk=None):
        assert ntk is not None
        total = float(sum(ntk.values()))
        return self._blend({n: total / k if k > 0 else math.nan for n, k in ntk.items()})


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - np.max(z))
    return e / e.sum()


class SoftAdapt(WeightingStrategy):
    """Softmax of the relative loss rates: terms that stall or grow get more weight."""

    name = "softadapt"

    @classmethod
    def from_config(cls, cfg: WeightingConfig, seed: int = 0) -> WeightingStrategy:
        return cls(initial=cfg.initial, update_every=cfg.update_every, temperature=cfg.temperature)

    def __init__(self, initial=None, update_every: int = 10, temperature: float = 0.1) -> None:
        super().__init__(initial, update_every)
        self.temperature = temperature
        self._prev: dict[str, float] | None = None

    def start(self, names):
        self._prev = None
        return super().start(names)

    def update(self, losses, gradients=None, ntk=None):
        cur = {n: float(losses[n]) for n in self.names}
        if self._prev is not None:
            s = np.array([cur[n] / max(self._prev[n], 1e-300) - 1.0 for n in self.names])
            w = len(self.names) * _softmax(s / self.temperature)
            self.weights = dict(zip(self.names, w.tolist(), strict=True))
        self._prev = cur
        return dict(self.weights)


class ReLoBRaLo(WeightingStrategy):
    """Relative loss balancing with random look-back."""

    name = "relobralo"

    @classmethod
    def from_config(cls, cfg: WeightingConfig, seed: int = 0) -> WeightingStrategy:
        return cls(
            initial=cfg.initial,
            update_every=cfg.update_every,
            alpha=cfg.alpha,
            temperature=cfg.temperature,
            rho=cfg.rho,
            seed=seed,
        )

    def __init__(
        self,
        initial=None,
        update_every: int = 10,
        alpha: float = 0.999,
        temperature: float = 0.1,
        rho: float = 0.999,
        seed: int = 0,
    ) -> None:
        super().__init__(initial, update_every)
        self.alpha, self.temperature, self.rho = alpha, temperature, rho
        self._rng = np.random.default_rng(seed)
        self._first: np.ndarray | None = None
        self._prev: np.ndarray | None = None

    def start(self, names):
        self._first = self._prev = None
        return super().start(names)

    def _bal(self, cur: np.ndarray, ref: np.ndarray) -> np.ndarray:
        return len(cur) * _softmax(cur / (self.temperature * np.maximum(ref, 1e-300)))

    def update(self, losses, gradients=None, ntk=None):
        cur = np.array([float(losses[n]) for n in self.names])
        if self._first is None:
            self._first = self._prev = cur
            return dict(self.weights)
        lam = np.array([self.weights[n] for n in self.names])
        rho = float(self._rng.random() < self.rho)
        lam = self.alpha * (rho * lam + (1 - rho) * self._bal(cur, self._first)) + (1 - self.alpha) * self._bal(
            cur, self._prev
        )
        self._prev = cur
        self.weights = dict(zip(self.names, lam.tolist(), strict=True))
        return dict(self.weights)


#: The one registry of weighting strategies, name -> class: the CLI's choices, the config's check and the docs
#: are read from it.
WEIGHTINGS: dict[str, type[WeightingStrategy]] = {
    cls.name: cls for cls in (Fixed, LRAnnealing, GradNormBalance, NTKTrace, SoftAdapt, ReLoBRaLo)
}
SCHEMES = tuple(WEIGHTINGS)


def make_weighting(cfg: WeightingConfig, seed: int = 0) -> WeightingStrategy:
    """Resolve ``cfg.scheme`` into a strategy object (the only place the names are interpreted)."""
    if cfg.scheme not in WEIGHTINGS:
        raise UsageError(f"unknown weighting scheme {cfg.scheme!r} (valid: {', '.join(WEIGHTINGS)})")
    return WEIGHTINGS[cfg.scheme].from_config(cfg, seed)
