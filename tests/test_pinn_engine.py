"""PINN engine on toy problems with closed forms: multi-output systems, a trainable scalar, soft conditions,
the two residual evaluators and Jacobians, the NaN guard, collocation with singular points."""

import math

import numpy as np
import pytest
import torch

from sciml.errors import SciMLError
from sciml.pinn.config import build_config
from sciml.pinn.model import PinnModel
from sciml.pinn.problem import AbstractProblem, Condition, Singularity, Unknown
from sciml.pinn.train import solve
from sciml.pinn.weighting import Fixed
from sciml.problem import Parameter


class Rotation(AbstractProblem):
    """y' = a z, z' = -a y, y(0) = 0, z(0) = 1 (hard); z(1) = cos 2 (soft) fixes the unknown a = 2.

    Solution y = sin(a x), z = cos(a x): two outputs, two equations, one trainable scalar.
    """

    name = "rotation"
    summary = "toy rotation system"
    equation = "y' = a z, z' = -a y"
    parameters = (Parameter("k", 2.0, low=0.5, high=3.0),)
    outputs = ("y", "z")
    equations = ("y", "z")

    def domain(self):
        return (0.0, 1.0)

    def residual(self, x, y, u):
        a = u["a"]
        return (y.d("y", 1) - a * y("z"), y.d("z", 1) + a * y("y"))

    def trial(self, x, nn, u):
        return torch.cat([x * nn[:, 0:1], 1 + x * nn[:, 1:2]], 1)

    def conditions(self):
        return (Condition("bc@x=1", 1.0, lambda x, y, u: y("z") - math.cos(self.k)),)

    def singularities(self):  # not singular: exercises a point term given by its own relation
        return (Singularity(0.0, func=lambda x, y, u: y.d("y", 1) - u["a"], label="x=0"),)

    def unknowns(self):
        return (Unknown("a", 1.5, "frequency"),)

    def reference_solution(self, x):
        return np.stack([np.sin(self.k * x), np.cos(self.k * x)], 1)

    def reference_unknowns(self):
        return {"a": self.k}


class Moving(Rotation):
    """Adds a condition at a location that moves with the trainable scalar: y(a/4) = sin(k^2/4)."""

    name = "moving"

    def conditions(self):
        return (
            *super().conditions(),
            Condition("moving@x=a/4", lambda u: u["a"] / 4, lambda x, y, u: y("y") - math.sin(self.k**2 / 4)),
        )


class Diverging(Rotation):
    name = "diverging"

    def conditions(self):
        return (Condition("bad", 0.5, lambda x, y, u: torch.sqrt(-1.0 - y("y") ** 2)),)


FAST = {"network": {"hidden": [10, 10]}, "collocation": {"n_points": 20}, "time_limit_s": 60}


def test_multi_output_with_trainable_scalar_recovers_the_closed_form():
    p = Rotation(k=2.0)
    res = solve(p, build_config(FAST, {"adam": {"steps": 20}, "lm": {"max_iter": 25}}))
    x = np.linspace(0, 1, 201)
    err = np.abs(res.model.predict(x) - p.reference_solution(x)).max()
    a = float(res.model.u["a"].detach())
    # short training (CI): the closed form to 1e-5; the unknown a = k from a single soft condition
    assert abs(a - 2.0) < 1e-5, a
    assert err < 1e-5, err
    assert res.steps["lm"] > 0
    assert res.terms == ["residual[y]", "residual[z]", "regularity@x=0", "bc@x=1"]
    assert {"L:bc@x=1", "w:bc@x=1", "wL:bc@x=1", "u:a", "error"} <= set(res.history[-1])


@pytest.mark.parametrize("cls", [Rotation, Moving])
def test_batched_and_functional_evaluators_agree_and_jacobian_matches_autograd(cls):
    torch.manual_seed(0)
    p = cls(k=2.0)
    m = PinnModel(p, build_config(FAST).network, "float64")
    x = torch.linspace(0, 1, 9, dtype=torch.float64)
    params = {k: v.detach() for k, v in m.named_parameters()}
    batched = m.terms(x)
    functional = m.functional_terms(params, x)
    for n in batched:
        torch.testing.assert_close(batched[n], functional[n], rtol=1e-12, atol=1e-13)
    jac = m.jacobians(params, x)
    # row 3 of the residual[z] term, by reverse-mode autograd on the batched evaluator
    rows = [("residual[z]", 3), ("bc@x=1", 0), ("regularity@x=0", 0)]
    if cls is Moving:  # d/da includes the motion of the evaluation point
        rows.append(("moving@x=a/4", 0))
    for term, row in rows:
        m.zero_grad()
        m.terms(x)[term][row].backward()
        g = torch.cat([q.grad.reshape(-1) if q.grad is not None else torch.zeros(q.numel()) for q in m.parameters()])
        torch.testing.assert_close(jac[term][row], g, rtol=1e-10, atol=1e-12)
    if cls is Moving:  # independent check of d(term)/da by central differences
        names = [k for k, _ in m.named_parameters()]
        ia = sum(q.numel() for q in list(m.parameters())[: names.index("u.a")])  # column of u.a
        h = 1e-6
        vals = []
        for sign in (1, -1):
            with torch.no_grad():
                m.u["a"] += sign * h
            vals.append(float(m.terms(x)["moving@x=a/4"][0]))
            with torch.no_grad():
                m.u["a"] -= sign * h
        assert float(jac["moving@x=a/4"][0, ia]) == pytest.approx((vals[0] - vals[1]) / (2 * h), rel=1e-6)


def test_derivatives_of_the_network_match_finite_differences():
    torch.manual_seed(1)
    p = Rotation(k=2.0)
    m = PinnModel(p, build_config(FAST).network, "float64")
    x0, h = 0.37, 1e-4
    f = m.predict(np.array([x0 - h, x0, x0 + h]))
    xg = torch.tensor([x0], dtype=torch.float64, requires_grad=True)
    from sciml.pinn.model import _BatchSolution

    s = _BatchSolution(p, xg, m(xg))
    d1 = float(s.d("z", 1)[0])
    d2 = float(s.d("z", 2)[0])
    assert d1 == pytest.approx((f[2, 1] - f[0, 1]) / (2 * h), rel=1e-7)
    assert d2 == pytest.approx((f[2, 1] - 2 * f[1, 1] + f[0, 1]) / h**2, rel=1e-4)


def test_nan_stops_training_naming_step_and_term():
    with pytest.raises(SciMLError, match=r"loss term 'bad' is nan at adam step 1"):
        solve(Diverging(k=2.0), build_config(FAST, {"adam": {"steps": 5}, "lm": {"max_iter": 0}}))


def test_singular_points_stay_in_the_collocation_set_after_resampling():
    p = Rotation(k=2.0)
    cfg = build_config(
        FAST,
        {"collocation": {"distribution": "pseudo", "resample_every": 3}, "adam": {"steps": 7}, "lm": {"max_iter": 0}},
    )
    res = solve(p, cfg, weighting=Fixed())
    assert 0.0 in res.collocation
    assert len(res.collocation) == 21  # 20 fresh pseudo-random points + the singular point


def test_problem_solver_defaults_and_config_precedence():
    class Wide(Rotation):
        solver_defaults = {"network": {"hidden": [7]}}

    cfg = build_config(Wide.solver_defaults, {"seed": 3})
    assert cfg.network.hidden == (7,) and cfg.seed == 3


def test_ntk_and_lra_weights_from_the_trainer_match_direct_autograd():
    from sciml.pinn.train import Trainer
    from sciml.pinn.weighting import LRAnnealing, NTKTrace
    from sciml.progress import NoProgress

    p = Rotation(k=2.0)
    cfg = build_config(FAST, {"collocation": {"n_points": 6}})
    tr = Trainer(p, cfg, NTKTrace(alpha=0.0), NoProgress())
    vecs = tr.model.terms(tr.x)
    tr._update_weights({n: torch.mean(v**2) for n, v in vecs.items()})
    params = list(tr.model.parameters())
    diag = {}
    for n, v in vecs.items():  # mean over points of |d r_p / d theta|^2, one backward pass per point
        rows = [torch.autograd.grad(v[i], params, retain_graph=True, allow_unused=True) for i in range(v.numel())]
        diag[n] = np.mean([sum(float((g**2).sum()) for g in row if g is not None) for row in rows])
    total = sum(diag.values())
    for n in diag:
        assert tr.weights[n] == pytest.approx(total / diag[n], rel=1e-9)

    tr = Trainer(p, cfg, LRAnnealing(alpha=0.0), NoProgress())
    vecs = tr.model.terms(tr.x)
    losses = {n: torch.mean(v**2) for n, v in vecs.items()}
    tr._update_weights(losses)
    params = list(tr.model.parameters())
    grads = {}
    for n in losses:
        g = torch.autograd.grad(losses[n], params, retain_graph=True, allow_unused=True)
        grads[n] = torch.cat(
            [(gi if gi is not None else torch.zeros_like(q)).reshape(-1) for gi, q in zip(g, params, strict=True)]
        )
    gmax = float(grads["residual[y]"].abs().max())
    for n in list(losses)[1:]:
        assert tr.weights[n] == pytest.approx(gmax / float(grads[n].abs().mean()), rel=1e-9)


def test_lbfgs_stage_and_residual_refinement():
    p = Rotation(k=2.0)
    base = build_config(FAST, {"adam": {"steps": 20}, "lm": {"max_iter": 0}})
    adam_only = solve(p, base)
    with_lbfgs = solve(
        p,
        build_config(
            FAST,
            {"adam": {"steps": 20}, "lm": {"max_iter": 0}, "lbfgs": {"max_iter": 40}, "collocation": {"rar_points": 5}},
        ),
    )
    assert with_lbfgs.steps["lbfgs"] > 0
    assert with_lbfgs.history[-1]["loss"] < 1e-2 * adam_only.history[-1]["loss"]
    assert len(with_lbfgs.collocation) == len(adam_only.collocation) + 5
