"""Hypergeometric problem: references against closed forms, residual of the exact solution, domains, checks,
short PINN solves (terminating and non-terminating)."""

import numpy as np
import pytest
import torch
from scipy.special import hyp2f1

from sciml.errors import UsageError
from sciml.pinn.config import build_config
from sciml.pinn.results import compute_metrics
from sciml.pinn.train import solve
from sciml.problems.hypergeometric import Hypergeometric


class Exact:
    """2F1 and its derivatives, d/dx 2F1(a,b;c;x) = ab/c 2F1(a+1,b+1;c+1;x) (scipy, away from the bad cases)."""

    def __init__(self, a, b, c, x):
        self.abc, self.x = (a, b, c), np.asarray(x, dtype=float)

    def __call__(self, i=0):
        return self.d(i, 0)

    def d(self, i=0, k=1):
        a, b, c = self.abc
        coef = 1.0
        for j in range(k):
            coef *= (a + j) * (b + j) / (c + j)
        return torch.as_tensor(coef * hyp2f1(a + k, b + k, c + k, self.x))


CLOSED = [
    ((-2.0, 1.0, 1.0), lambda x: (1 - x) ** 2),
    ((1.0, 1.0, 2.0), lambda x: -np.log1p(-x) / x),
    ((0.5, 0.5, 1.5), lambda x: np.arcsin(np.sqrt(x)) / np.sqrt(x)),
    ((-3.0, 2.0, 0.5), lambda x: 1 - 12 * x + 24 * x**2 - 64 / 5 * x**3),
]


@pytest.mark.parametrize(("abc", "f"), CLOSED)
def test_reference_matches_closed_forms(abc, f):
    p = Hypergeometric(a=abc[0], b=abc[1], c=abc[2])
    x = p.eval_grid(401)[1:]  # closed forms are 0/0 at x = 0
    np.testing.assert_allclose(p.reference_solution(x)[:, 0], f(x), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("abc", [(-2.0, 1.0, 1.0), (0.5, 0.3, 1.5), (1.0, 1.0, 2.0), (0.5, 0.5, 1.0)])
def test_residual_of_exact_solution_vanishes(abc):
    p = Hypergeometric(a=abc[0], b=abc[1], c=abc[2])
    a, b = p.domain()
    x = np.linspace(a, b, 81)
    (r,) = p.residual(torch.as_tensor(x), Exact(*abc, x), {})
    assert np.max(np.abs(r.numpy())) < 1e-11
    e = Exact(*abc, np.array([0.0]))
    assert float(abc[2] * e.d(0, 1)[0] - abc[0] * abc[1] * e(0)[0]) == pytest.approx(0.0, abs=1e-14)


def test_domain_and_singular_points_depend_on_termination():
    t = Hypergeometric(a=-2, b=1, c=1)
    assert t.domain() == (0.0, 2.0) and [s.x for s in t.singularities()] == [0.0, 1.0]
    n = Hypergeometric(a=0.5, b=0.3, c=1.5, x_max=0.8)
    assert n.domain() == (0.0, 0.8) and [s.x for s in n.singularities()] == [0.0]
    assert 1.0 in t.eval_grid(2001) and 0.0 in n.eval_grid(2001)


@pytest.mark.parametrize(
    ("over", "match"),
    [
        ({"c": "-2"}, "non-positive integer"),
        ({"c": "0"}, "non-positive"),
        ({"x_max": "1"}, "out of range"),
        ({"q": "1"}, "no parameter"),
    ],
)
def test_bad_parameters_are_usage_errors(over, match):
    with pytest.raises(UsageError, match=match):
        Hypergeometric.resolve_params(over)


FAST = {"adam": {"steps": 50}, "lm": {"max_iter": 20}, "collocation": {"n_points": 40}}


# CI-sized (70 steps); measured 6.7e-10 / 1.5e-7 (seed 0)
@pytest.mark.parametrize(("abc", "tol"), [((-2.0, 1.0, 1.0), 1e-7), ((0.5, 0.3, 1.5), 1e-6)])
def test_short_solve(abc, tol):
    res = solve(Hypergeometric(a=abc[0], b=abc[1], c=abc[2]), build_config(FAST))
    m = compute_metrics(res)
    assert m["rel_l2"] < tol, m["rel_l2"]
    assert abs(m["singular_points"]["regularity@x=0"]["residual"][0]) < 1e-5
