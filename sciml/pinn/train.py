"""Training: Adam (adaptive weights) -> L-BFGS -> Levenberg-Marquardt, with history, NaN guard and early stop.

The loss is :math:`\\mathcal L(\\theta) = \\sum_i \\lambda_i\\,\\operatorname{mean}(r_i^2) = \\|\\rho\\|^2`,
:math:`\\rho = \\operatorname{concat}_i \\sqrt{\\lambda_i / n_i}\\, r_i`. Adam follows the adaptive weights; the
quasi-Newton and Levenberg-Marquardt stages keep the final weights fixed. The Levenberg-Marquardt step is
:math:`\\delta = -J^T (J J^T + \\mu I)^{-1}\\rho` with the exact Jacobian :math:`J = \\partial\\rho/\\partial\\theta`
(``torch.func.jacrev``) and Nielsen's damping update; it is what takes float64 PINNs from ~1e-5 to ~1e-8
relative error on these small problems, where L-BFGS stalls.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import torch

from sciml.errors import SciMLError
from sciml.pinn import _dde
from sciml.pinn.config import SolverConfig
from sciml.pinn.model import PinnModel
from sciml.pinn.problem import AbstractProblem
from sciml.pinn.weighting import WeightingStrategy, make_weighting
from sciml.progress import NoProgress, Progress

LOGGER = logging.getLogger(__name__)


@dataclass
class SolveResult:
    """A trained model and what happened while training it."""

    problem: AbstractProblem
    config: SolverConfig
    model: PinnModel
    terms: list[str]
    weights: dict[str, float]
    history: list[dict[str, Any]]
    collocation: np.ndarray
    steps: dict[str, int]
    timings: dict[str, float]
    stop_reason: str
    weighting: str = "fixed"
    extra: dict[str, Any] = field(default_factory=dict)


class _Stop(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason


class Trainer:
    """Runs the three stages for one problem and solver config (use :func:`solve`)."""

    def __init__(
        self, problem: AbstractProblem, cfg: SolverConfig, weighting: WeightingStrategy, progress: Progress
    ) -> None:
        self.problem, self.cfg, self.weighting, self.progress = problem, cfg, weighting, progress
        _dde.seed_everything(cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)
        self.model = PinnModel(problem, cfg.network, cfg.dtype)
        self.dtype = self.model.tdtype
        self.names = self.model.term_names()
        self.a, self.b = problem.domain()
        self.fixed = np.array([s.x for s in problem.singularities() if not callable(s.x)], dtype=float)
        col = cfg.collocation
        self.x = self._with_singular(_dde.sample_points(self.a, self.b, col.n_points, col.distribution, cfg.dtype))
        self.x_eval = problem.eval_grid(cfg.eval_points)
        ref = problem.reference_solution(self.x_eval)
        self.ref = None if ref is None else np.asarray(ref, dtype=float).reshape(len(self.x_eval), -1)
        self.weights = weighting.start(self.names)
        self.history: list[dict[str, Any]] = []
        self.steps = {"adam": 0, "lbfgs": 0, "lm": 0}
        self.timings: dict[str, float] = {}
        self.t0 = time.monotonic()
        self.cpu0 = time.process_time()

    # -- helpers -------------------------------------------------------------------------------------
    def _with_singular(self, pts: np.ndarray) -> Tensor:
        x = np.unique(np.concatenate([np.asarray(pts, dtype=float).reshape(-1), self.fixed]))
        return torch.as_tensor(x, dtype=self.dtype)

    def _losses(self, vecs: Mapping[str, Tensor], stage: str, step: int) -> dict[str, Tensor]:
        losses = {n: torch.mean(v**2) for n, v in vecs.items()}
        for n, v in losses.items():
            if not torch.isfinite(v):
                raise SciMLError(
                    f"training diverged: loss term {n!r} is {v.item()} at {stage} step {step} "
                    "(try a smaller learning rate, float64, or different weights)"
                )
        return losses

    def _total(self, losses: Mapping[str, Tensor]) -> Tensor:
        return cast(Tensor, sum(self.weights[n] * losses[n] for n in self.names))

    def error(self) -> float:
        """Relative L2 error against the reference on the evaluation grid (NaN without a reference)."""
        if self.ref is None:
            return math.nan
        pred = self.model.predict(self.x_eval)
        return float(np.linalg.norm(pred - self.ref) / max(float(np.linalg.norm(self.ref)), 1e-300))

    def _record(self, stage: str, step: int, losses: Mapping[str, Any], force: bool = False) -> None:
        total_steps = sum(self.steps.values())
        if not force and total_steps % self.cfg.history_every:
            return
        vals = {n: float(torch.as_tensor(losses[n]).detach()) for n in self.names}
        row: dict[str, Any] = {
            "stage": stage,
            "step": total_steps,
            "time_s": time.monotonic() - self.t0,
            "loss": sum(self.weights[n] * vals[n] for n in self.names),
            "error": self.error(),
        }
        for n in self.names:
            row[f"L:{n}"] = vals[n]
            row[f"w:{n}"] = self.weights[n]
            row[f"wL:{n}"] = self.weights[n] * vals[n]
        for k, v in self.model.unknown_values().items():
            row[f"u:{k}"] = float(v.detach())
        self.history.append(row)

    @staticmethod
    def _unweighted(losses: Mapping[str, Any]) -> float:
        """:math:`\\sum_i L_i`: the early-stop criterion (adaptive weights can shrink a term towards zero, so the
        weighted loss alone could stop training with that term unsolved)."""
        return float(sum(float(torch.as_tensor(v).detach()) for v in losses.values()))

    def _check_stop(self, total: float) -> None:
        """``total``: the unweighted loss."""
        if total < self.cfg.target_loss:
            raise _Stop(f"target loss {self.cfg.target_loss:g} reached")
        if time.monotonic() - self.t0 > self.cfg.time_limit_s:
            raise _Stop(f"time limit {self.cfg.time_limit_s:g} s reached")

    def _params(self) -> list[torch.nn.Parameter]:
        return list(self.model.parameters())

    # -- weighting -----------------------------------------------------------------------------------
    def _update_weights(self, losses: Mapping[str, Tensor]) -> None:
        w = self.weighting
        if w.needs == "gradients":
            params = self._params()
            grads = {}
            for n in self.names:
                g = torch.autograd.grad(losses[n], params, retain_graph=True, allow_unused=True)
                grads[n] = (
                    torch.cat(
                        [
                            (gi if gi is not None else torch.zeros_like(p)).reshape(-1)
                            for gi, p in zip(g, params, strict=True)
                        ]
                    )
                    .detach()
                    .cpu()
                    .numpy()
                )
            self.weights = w.update({n: float(v.detach()) for n, v in losses.items()}, gradients=grads)
        elif w.needs == "ntk":
            self.weights = w.update({n: float(v.detach()) for n, v in losses.items()}, ntk=self._ntk_diagonals())
        else:
            self.weights = w.update({n: float(v.detach()) for n, v in losses.items()})

    def _ntk_diagonals(self) -> dict[str, float]:
        """Mean over points of :math:`\\|\\nabla_\\theta r_i(x_p)\\|^2` for each term (NTK diagonal)."""
        params = {k: v.detach() for k, v in self.model.named_parameters()}
        jac = self.model.jacobians(params, self.x)
        return {n: float(torch.mean(jac[n].pow(2).sum(1))) for n in self.names}

    # -- stages --------------------------------------------------------------------------------------
    def adam(self) -> None:
        cfg = self.cfg.adam
        if cfg.steps == 0:
            return
        opt = torch.optim.Adam(self._params(), lr=cfg.lr)
        sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=cfg.decay ** (1 / 1000))
        col = self.cfg.collocation
        for step in range(1, cfg.steps + 1):
            if col.resample_every and step % col.resample_every == 0:
                pts = _dde.sample_points(self.a, self.b, col.n_points, "pseudo", self.cfg.dtype)
                self.x = self._with_singular(pts)
            losses = self._losses(self.model.terms(self.x), "adam", step)
            if step == 1 or step % self.weighting.update_every == 0:
                self._update_weights(losses)
            total = self._total(losses)
            opt.zero_grad()
            total.backward()
            opt.step()
            sched.step()
            self.steps["adam"] = step
            self._record("adam", step, losses, force=step == 1)
            self.progress.update(1, {"loss": float(total.detach())})
            self._check_stop(self._unweighted(losses))

    def refine(self) -> None:
        """Residual-based adaptive refinement: add the points of largest residual from a dense candidate set."""
        k = self.cfg.collocation.rar_points
        if k == 0:
            return
        cand = np.linspace(self.a, self.b, 20 * self.cfg.collocation.n_points + 1)
        cand = cand[~np.isin(cand, self.x.cpu().numpy())]
        res = np.abs(self.model.residual_on(cand)).sum(1)
        new = cand[np.argsort(res)[-k:]]
        self.x = self._with_singular(np.concatenate([self.x.cpu().numpy(), new]))

    def lbfgs(self) -> None:
        cfg = self.cfg.lbfgs
        if cfg.max_iter == 0:
            return
        chunk = self.cfg.history_every
        params = self._params()
        opt = torch.optim.LBFGS(
            params,
            lr=1.0,
            max_iter=chunk,
            history_size=cfg.history,
            tolerance_grad=0.0,
            tolerance_change=0.0,
            line_search_fn="strong_wolfe",
        )
        box: dict[str, Any] = {}

        def closure() -> Tensor:
            opt.zero_grad()
            losses = self._losses(self.model.terms(self.x), "lbfgs", self.steps["lbfgs"])
            total = self._total(losses)
            total.backward()
            box["losses"] = losses
            return total

        prev = math.inf
        while self.steps["lbfgs"] < cfg.max_iter:
            opt.step(closure)
            # torch's LBFGS keeps its iteration count in the state of its first parameter
            n_iter = opt.state[params[0]].get("n_iter", 0)
            done = n_iter - self.steps["lbfgs"]
            self.steps["lbfgs"] = n_iter
            losses = {n: v.detach() for n, v in box["losses"].items()}
            total = float(self._total(losses))
            self._record("lbfgs", self.steps["lbfgs"], losses, force=True)
            self.progress.update(max(done, 0), {"loss": total})
            self._check_stop(self._unweighted(losses))
            if done == 0 or total >= prev:
                break
            prev = total

    def lm(self) -> None:
        r"""Levenberg-Marquardt on the weighted residual vector :math:`\rho(\theta)` (weights frozen, floored so
        that no term drops out of the Gauss-Newton model): :math:`(J J^\top + \mu I) s = \rho`,
        :math:`\delta = -J^\top s`, accepted when the gain ratio is positive (Nielsen's damping update)."""
        cfg = self.cfg.lm
        if cfg.max_iter == 0:
            return
        wmax = max(self.weights.values())
        scale = {n: math.sqrt(max(self.weights[n], 1e-6 * wmax)) for n in self.names}
        res = _WeightedResiduals(self, scale)
        theta = res.flat.theta()
        r, vecs = res.at(theta)
        cur = _Iterate(theta, r, float(r @ r), vecs)
        mu, nu = cfg.mu, 2.0
        best = (math.inf, theta)
        try:
            for it in range(1, cfg.max_iter + 1):
                jm = res.jacobian(cur.theta)
                if cfg.probe_every and it % cfg.probe_every == 0:
                    best = self._lm_probe(res, cur.theta, cur.r, jm, best)
                nxt, mu, nu = _lm_step(res, cur, jm, mu, nu)
                res.flat.load((nxt or cur).theta)
                if nxt is None:
                    LOGGER.info("levenberg-marquardt: no decrease at step %d (damping %.1e); stopping", it, mu)
                    break
                cur = nxt
                self.steps["lm"] = it
                losses = self._losses(cur.vecs, "lm", it)
                self._record("lm", it, losses)
                self.progress.update(1, {"loss": cur.loss})
                self._check_stop(self._unweighted(losses))
        finally:
            theta, loss = cur.theta, cur.loss
            if cfg.final_linear_solve:
                theta, loss = self._final_linear_solve(res, theta, cur.r, loss)
            if best[0] < loss:
                LOGGER.info("levenberg-marquardt: keeping the best output-layer probe (loss %.3e)", best[0])
                theta = best[1]
            res.flat.load(theta)

    def _lm_probe(
        self, res: _WeightedResiduals, theta: Tensor, r: Tensor, jm: Tensor, best: tuple[float, Tensor]
    ) -> tuple[float, Tensor]:
        """Where does the exact output-layer solve land? Kept aside (taking it disturbs LM); the best probe is the
        answer if it beats the final iterate. Stops the stage when the probe reaches the target loss."""
        dc = res.output_layer_step(jm, r, theta)
        r_c, vecs_c = res.at(theta + dc)
        loss_c = float(r_c @ r_c)
        res.flat.load(theta)
        if math.isfinite(loss_c) and loss_c < best[0]:
            best = (loss_c, theta + dc)
            if self._unweighted({n: torch.mean(v**2) for n, v in vecs_c.items()}) < self.cfg.target_loss:
                raise _Stop(f"target loss {self.cfg.target_loss:g} reached (output-layer solve)")
        return best

    def _final_linear_solve(
        self, res: _WeightedResiduals, theta: Tensor, r: Tensor, loss: float
    ) -> tuple[Tensor, float]:
        """Exact least squares for the output layer at the end (kept only if the loss decreases)."""
        dc = res.output_layer_step(res.jacobian(theta), r, theta)
        r_c, _ = res.at(theta + dc)
        loss_c = float(r_c @ r_c)
        if loss_c < loss:
            theta, loss = theta + dc, loss_c
        res.flat.load(theta)
        return theta, loss

    def _term_losses(self) -> dict[str, float]:
        vecs = self.model.terms(self.x)
        return {n: float(torch.mean(v.detach() ** 2)) for n, v in vecs.items()}

    def run(self) -> SolveResult:
        total = self.cfg.adam.steps + self.cfg.lbfgs.max_iter + self.cfg.lm.max_iter
        self.progress.start(total, self.problem.title())
        reason = "all stages finished"
        try:
            for stage in (self.adam, self.refine, self.lbfgs, self.lm):
                t = time.monotonic()
                try:
                    stage()
                finally:
                    self.timings[stage.__name__] = time.monotonic() - t
        except _Stop as stop:
            reason = stop.reason
        finally:
            self.progress.close()
        self._record("final", sum(self.steps.values()), self._term_losses(), force=True)
        self.timings["total"] = time.monotonic() - self.t0
        self.timings["cpu"] = time.process_time() - self.cpu0
        return SolveResult(
            problem=self.problem,
            config=self.cfg,
            model=self.model,
            terms=self.names,
            weights=dict(self.weights),
            history=self.history,
            collocation=self.x.cpu().numpy(),
            steps=dict(self.steps),
            timings=dict(self.timings),
            stop_reason=reason,
            weighting=self.weighting.name,
        )


Tensor = torch.Tensor


def solve(
    problem: AbstractProblem,
    config: SolverConfig | None = None,
    weighting: WeightingStrategy | None = None,
    progress: Progress | None = None,
) -> SolveResult:
    """Train a PINN for ``problem``.

    Parameters
    ----------
    problem
        An instantiated problem (parameters resolved).
    config
        Solver settings; default :class:`SolverConfig` updated by ``problem.solver_defaults`` and
        ``problem.resolution(problem.params)``.
    weighting
        Loss weighting strategy; default built from ``config.weighting``.
    progress
        Progress reporter (default: none).
    """
    if config is None:
        from sciml.pinn.config import build_config, problem_layers

        config = build_config(*problem_layers(problem, problem.params))
    for line in problem.accuracy_warnings(problem.params):
        # one line each, before any work: the solve still runs (the parameters are valid)
        LOGGER.warning("%s: accuracy target not expected: %s", problem.title(), line)
    if weighting is None:
        weighting = make_weighting(config.weighting, seed=config.seed)
    with warnings.catch_warnings():
        # torch's functorch transforms (our exact Jacobians) call torch.jit.script internally, which torch 2.14
        # deprecates with a FutureWarning on every solve; nothing the user can act on.
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
        return Trainer(problem, config, weighting, progress or NoProgress()).run()


class _FlatParameters:
    """The model's parameters as one flat vector :math:`\theta` (in ``named_parameters`` order) and back."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        named = list(model.named_parameters())
        self.keys = [k for k, _ in named]
        self.shapes = {k: p.shape for k, p in named}
        self.sizes = [p.numel() for _, p in named]
        self.offsets = np.cumsum([0, *self.sizes])

    def theta(self) -> Tensor:
        return torch.cat([p.detach().reshape(-1) for p in self.model.parameters()])

    def split(self, theta: Tensor) -> dict[str, Tensor]:
        return {k: c.reshape(self.shapes[k]) for k, c in zip(self.keys, torch.split(theta, self.sizes), strict=True)}

    def load(self, theta: Tensor) -> None:
        with torch.no_grad():
            params = dict(self.model.named_parameters())
            for k, c in self.split(theta).items():
                params[k].copy_(c)

    def columns(self, names: set[str]) -> Tensor:
        """Indices in :math:`\theta` of the named parameters."""
        return torch.cat(
            [torch.arange(self.offsets[i], self.offsets[i + 1]) for i, k in enumerate(self.keys) if k in names]
        )


class _WeightedResiduals:
    r"""The stacked residual :math:`
    ho(	heta) = [s_n r_n(	heta)/\sqrt{N_n}]_n` of a trainer's terms at its
        collocation points (:math:`s_n` the square roots of the frozen weights), so that :math:`
    ho^	op
    ho` is the
        weighted loss, and its Jacobian from the model's exact ``torch.func`` Jacobians."""

    def __init__(self, trainer: Trainer, scale: dict[str, float]) -> None:
        self.trainer, self.scale, self.names = trainer, scale, trainer.names
        self.flat = _FlatParameters(trainer.model)
        self.out_cols = self.flat.columns({f"net.{k}" for k in _dde.output_layer_names(trainer.model.net)})

    def at(self, theta: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """:math:`\rho(\theta)` and the unweighted term vectors (the model is left at ``theta``)."""
        self.flat.load(theta)
        vecs = {n: v.detach() for n, v in self.trainer.model.terms(self.trainer.x).items()}
        rho = torch.cat([self.scale[n] * vecs[n] / math.sqrt(vecs[n].numel()) for n in self.names])
        return rho, vecs

    def jacobian(self, theta: Tensor) -> Tensor:
        jac = self.trainer.model.jacobians(self.flat.split(theta), self.trainer.x)
        return torch.cat([self.scale[n] * jac[n] / math.sqrt(jac[n].shape[0]) for n in self.names], 0)

    def output_layer_step(self, jm: Tensor, r: Tensor, theta: Tensor) -> Tensor:
        """The step that solves the linearised problem exactly in the output layer's parameters only."""
        dc = torch.zeros_like(theta)
        dc[self.out_cols] = torch.linalg.lstsq(jm[:, self.out_cols], -r[:, None], driver="gelsd").solution[:, 0]
        return dc


@dataclass
class _Iterate:
    """A Levenberg-Marquardt iterate: parameters, weighted residual, loss and the unweighted term vectors."""

    theta: Tensor
    r: Tensor
    loss: float
    vecs: dict[str, Tensor]


def _lm_step(
    res: _WeightedResiduals, cur: _Iterate, jm: Tensor, mu: float, nu: float
) -> tuple[_Iterate | None, float, float]:
    r"""Raise the damping :math:`\mu` until a step decreases the loss (gain ratio > 0), then relax it; returns the
    accepted iterate (``None`` when no damping up to 1e16 decreased the loss) and the new :math:`\mu, \nu`."""
    a = jm @ jm.T
    eye = torch.eye(cur.r.shape[0], dtype=cur.r.dtype)
    while mu < 1e16:
        try:
            s = torch.linalg.solve(a + mu * eye, cur.r)
        except RuntimeError:  # singular for tiny mu: damp more
            mu, nu = mu * nu, nu * 2
            continue
        delta = -(jm.T @ s)
        lin = cur.r + jm @ delta
        pred = cur.loss - float(lin @ lin)
        r_new, vecs_new = res.at(cur.theta + delta)
        loss_new = float(r_new @ r_new)
        gain = (cur.loss - loss_new) / pred if pred > 0 else -1.0
        if math.isfinite(loss_new) and gain > 0:
            mu = max(mu * max(1 / 3, 1 - (2 * gain - 1) ** 3), 1e-15)
            return _Iterate(cur.theta + delta, r_new, loss_new, vecs_new), mu, 2.0
        mu, nu = mu * nu, nu * 2
    return None, mu, nu
