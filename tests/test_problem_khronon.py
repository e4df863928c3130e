"""khronon-bh: the classical reference solver and the problem metadata.

Independent references: the exact c -> infinity solution, series coefficients derived by hand (sympy),
tabulated shooting values from ../shared/reference/pinn.md §2.3, and the solver's own convergence under
changed numerical settings.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import pytest

from sciml.errors import UsageError
from sciml.problems._khronon_reference import (
    KhrononSolverSettings,
    exact_infinite_speed,
    exact_infinite_speed_derivative,
    origin_series,
    residual,
    solve_khronon,
    sound_horizon_series,
)

X_TABLE = np.array([0.25, 0.5, 0.75, 1.0])
# pinn.md §2.3 (independent shooting, ~1e-7 for y, +-5e-3 for the horizons): c -> (k, x_s, x_UH, y(X_TABLE))
TABLE = {
    1.5: (0.1187240, 1.086, 1.381, [0.86629265, 0.71228897, 0.53542889, 0.33601307]),
    2.0: (0.1137026, 1.136, 1.367, [0.86628154, 0.71208926, 0.53430906, 0.33219789]),
    3.0: (0.1095756, 1.192, 1.353, [0.86627238, 0.71192218, 0.53334300, 0.32871806]),
    5.0: (0.1071151, 1.242, 1.343, [0.86626691, 0.71182110, 0.53274265, 0.32643455]),
    10.0: (0.1059202, 1.284, 1.337, [0.86626424, 0.71177150, 0.53244209, 0.32523854]),
}


@cache
def solved(c: float):
    return solve_khronon(c)


def test_exact_limit_closed_form():
    x = np.linspace(0.0, 2.0, 201)
    y = exact_infinite_speed(x)
    # the factored form equals the signed square root of the quartic
    np.testing.assert_allclose(y**2, 1.0 - x + 27.0 * x**4 / 256.0, atol=1e-15)
    assert np.all(np.sign(y[x < 4 / 3 - 1e-9]) == 1) and np.all(np.sign(y[x > 4 / 3 + 1e-9]) == -1)
    h = 1e-6
    fd = (exact_infinite_speed(x[1:-1] + h) - exact_infinite_speed(x[1:-1] - h)) / (2 * h)
    np.testing.assert_allclose(exact_infinite_speed_derivative(x[1:-1]), fd, atol=1e-9)
    # it solves the eps = 1/c^2 = 0 equation
    ypp = (exact_infinite_speed_derivative(x[1:-1] + h) - exact_infinite_speed_derivative(x[1:-1] - h)) / (2 * h)
    r = residual(x[1:-1], y[1:-1], exact_infinite_speed_derivative(x[1:-1]), ypp, 0.0)
    assert np.max(np.abs(r)) < 1e-8


def test_origin_series_coefficients():
    # hand-derived (sympy): a5 = a4/2 - 1/128, a6 = (15 (64 a4 - 1) - eps (128 a4 + 5)) / 2560
    for k, eps in [(0.11, 0.25), (0.1, 0.01), (0.12, 0.0)]:
        a = origin_series(k, eps, 12)
        a4 = -5 / 128 + k / 2
        np.testing.assert_allclose(a[:5], [1, -0.5, -0.125, -0.0625, a4], rtol=0, atol=1e-16)
        assert a[5] == pytest.approx(a4 / 2 - 1 / 128, abs=1e-15)
        assert a[6] == pytest.approx((15 * (64 * a4 - 1) - eps * (128 * a4 + 5)) / 2560, abs=1e-15)
    # eps = 0, k = 27/256: the Taylor series of the exact solution (checked on its values)
    a = origin_series(27 / 256, 0.0, 30)
    x = np.array([0.05, 0.1, 0.2])
    np.testing.assert_allclose(np.polynomial.polynomial.polyval(x, a), exact_infinite_speed(x), atol=1e-14)


def test_sound_horizon_series_is_regular():
    c, xs = 2.0, 1.136
    eps = 1 / c**2
    b = sound_horizon_series(xs, eps, 20)
    assert b[0] ** 2 == pytest.approx((xs - 1) / (c**2 - 1), rel=1e-14)  # P1 = 0
    t = np.linspace(-0.02, 0.02, 9)
    poly = np.polynomial.polynomial
    y, yp, ypp = poly.polyval(t, b), poly.polyval(t, poly.polyder(b)), poly.polyval(t, poly.polyder(b, 2))
    assert np.max(np.abs(residual(xs + t, y, yp, ypp, eps))) < 1e-14


@pytest.mark.parametrize("c", sorted(TABLE))
def test_matches_tabulated_values(c):
    k, x_s, x_uh, y = TABLE[c]
    sol = solved(c)
    np.testing.assert_allclose(sol(X_TABLE), y, atol=1e-8)  # table rounded to 1e-8
    assert sol.k == pytest.approx(k, abs=3e-6)
    assert sol.x_sound == pytest.approx(x_s, abs=5e-3)
    assert sol.x_uh == pytest.approx(x_uh, abs=5e-3)


@pytest.mark.parametrize("c", [1.5, 10.0])
def test_horizons_and_regularity(c):
    sol = solved(c)
    eps = 1 / c**2
    # sound horizon: P1 = 0 there, P1 < 0 before, > 0 after
    y_s = float(sol(sol.x_sound))
    assert y_s**2 == pytest.approx((sol.x_sound - 1) / (c**2 - 1), rel=1e-10)
    for dx, sign in [(-1e-3, -1), (1e-3, 1)]:
        y = float(sol(sol.x_sound + dx))
        p2 = y * y - 1 + sol.x_sound + dx
        assert np.sign(p2 - c**2 * y * y) == sign
    assert abs(float(sol(sol.x_uh))) < 1e-12
    assert 1.0 < sol.x_sound < sol.x_uh < 2.0
    # the solution and its derivative are continuous across the pieces (series / integrator windows)
    s = KhrononSolverSettings()
    for xb in (s.x0, s.x_match, sol.x_sound - 0.02, sol.x_sound + 0.02):
        y, yp = sol.evaluate(np.array([xb - 1e-9, xb + 1e-9]))
        assert abs(y[1] - y[0] - 2e-9 * yp[0]) < 1e-11 and abs(yp[1] - yp[0]) < 1e-7
    # residual of the equation: y'' by central differences of y' away from the piece boundaries
    x = np.linspace(0.15, 1.0, 18)
    h = 1e-4
    y, yp = sol.evaluate(x)
    ypp = (sol.derivative(x + h) - sol.derivative(x - h)) / (2 * h)
    assert np.max(np.abs(residual(x, y, yp, ypp, eps))) < 1e-8


def test_self_convergence():
    """Different series orders, windows, matching point and tolerances agree to 1e-10 on [0, 2]."""
    c = 2.0
    a = solved(c)
    b = solve_khronon(
        c,
        KhrononSolverSettings(x0=0.06, x_match=0.55, delta=0.01, origin_order=32, sound_order=28, rtol=3e-14),
    )
    x = np.linspace(0.0, 2.0, 401)
    assert np.max(np.abs(a(x) - b(x))) < 1e-10
    assert abs(a.k - b.k) < 1e-10 and abs(a.x_sound - b.x_sound) < 1e-10 and abs(a.x_uh - b.x_uh) < 1e-10


def test_approaches_exact_limit():
    """|y_c - y_inf| ~ A/c^2 with one constant A: the finite-c solver converges onto the exact form."""
    x = np.linspace(0.0, 1.25, 126)
    y_inf = exact_infinite_speed(x)
    scaled = []
    for c in (100.0, 300.0):
        sol = solved(c)
        scaled.append(np.max(np.abs(sol(x) - y_inf)) * c**2)
        assert 0 < sol.x_uh - 4 / 3 < 2.0 / c**2  # measured 0.66/c^2 (c=100), 0.82/c^2 (c=300)
        assert abs(sol.x_sound - 4 / 3) < 1.0 / c
    assert scaled[1] == pytest.approx(scaled[0], rel=0.03)
    assert 0.01 < scaled[0] < 0.5  # measured 0.241


def test_infinite_speed_solution_and_rejections():
    sol = solve_khronon(math.inf)
    x = np.linspace(0, 2, 11)
    np.testing.assert_array_equal(sol(x), exact_infinite_speed(x))
    assert sol.x_uh == sol.x_sound == pytest.approx(4 / 3)
    for bad in (1.0, 0.5):
        with pytest.raises(UsageError, match="c <= 1"):
            solve_khronon(bad)
    with pytest.raises(UsageError, match=r"\[0, 2\]"):
        sol(np.array([2.5]))


def test_problem_metadata():
    from importlib.metadata import EntryPoint
    from pathlib import Path

    from sciml.registry import Registry

    # the entry point as declared in pyproject.toml (independent of which metadata the test process sees)
    line = 'khronon-bh = "sciml.problems.khronon_bh:KhrononBH"'
    assert line in (Path(__file__).parents[1] / "pyproject.toml").read_text()
    reg = Registry([EntryPoint("khronon-bh", "sciml.problems.khronon_bh:KhrononBH", "sciml.problems")])
    cls = reg.get("lorentz-bh")
    assert reg.get("einstein-aether-bh") is cls and cls.name == "khronon-bh"
    assert cls.resolve_params({})["c"] == 2.0
    assert math.isinf(cls.resolve_params({"c": "inf"})["c"])
    for bad in ("1", "0.3", "-2"):
        with pytest.raises(UsageError, match="Killing horizon"):
            cls.resolve_params({"c": bad})
    text = cls.describe()
    assert "sound" in text and "P1" in text and "27 x^4/256" in text


def test_pinn_short_training_c2():
    """CI-sized PINN solve (c = 2): a short Adam + Levenberg-Marquardt run against the classical solver.

    Measured with these settings: |y - y_ref| <= 1.3e-5 at x = 0.25..1, horizons within 2e-5 (~20-50 s).
    The default settings reach ~6e-8 (see the README section "Gravitational problems").
    """
    from sciml.pinn.config import build_config
    from sciml.pinn.train import solve
    from sciml.problems.khronon_bh import KhrononBH

    problem = KhrononBH(c=2.0)
    cfg = build_config(
        problem.solver_defaults,
        {
            "network": {"hidden": (24, 24, 24)},
            "collocation": {"n_points": 120},
            "adam": {"steps": 300},
            "lm": {"max_iter": 120},
        },
    )
    res = solve(problem, cfg)
    assert res.steps["lm"] > 50, res.stop_reason
    err = np.abs(res.model.predict(X_TABLE)[:, 0] - solved(2.0)(X_TABLE))
    assert np.all(err < 1e-4), err
    u = {k: float(v) for k, v in res.model.unknown_values().items()}
    ref = problem.reference_unknowns()
    assert abs(u["x_s"] - ref["x_s"]) < 1e-3 and abs(u["x_uh"] - ref["x_uh"]) < 1e-3, (u, ref)
    # the trained profile has its sound horizon where P1 = 0 and crosses y = 0 at x_uh
    y_s = float(res.model.predict(np.array([u["x_s"]]))[0, 0])
    assert abs(y_s**2 - (u["x_s"] - 1) / 3.0) < 1e-4


def test_problem_domain_and_hooks():
    from sciml.problems.khronon_bh import CHECK_POINTS, KhrononBH, auto_x_max

    assert auto_x_max(math.inf) == 2.0 and auto_x_max(10.0) == pytest.approx(4 / 3 + 0.03)
    for c in (1.01, 1.5, 10.0, 1e3):
        sol = solved(c) if c in (1.5, 10.0) else None
        if sol is not None:  # both horizons inside, the first inner bounce (|y''| > 20) outside
            assert sol.x_uh < auto_x_max(c) - 0.02
            x = np.linspace(sol.x_uh, auto_x_max(c), 50)
            ypp = (sol.derivative(x + 1e-5) - sol.derivative(x - 1e-5)) / 2e-5
            assert np.max(np.abs(ypp)) < 2.0  # measured 0.9 at c = 10 (5 at 1.38, 143 at the bounce, 1.40)
        assert auto_x_max(c) > 4 / 3
    p = KhrononBH(c=10.0, x_max=2.0)
    assert p.domain() == (0.0, 2.0)
    with pytest.raises(UsageError, match="both horizons"):
        KhrononBH.resolve_params({"x_max": "1.3"})
    grid = KhrononBH(c=2.0).eval_grid(101)
    assert all(np.any(grid == xc) for xc in CHECK_POINTS)
    m = KhrononBH(c=2.0).extra_metrics(grid, KhrononBH(c=2.0).reference_solution(grid))
    assert m["max_abs_error_x<=1"] == 0.0 and m["x_uh_error_from_profile"] < 1e-4
    markers = KhrononBH(c=2.0).plot_markers({"x_s": 1.1, "x_uh": 1.3})
    assert markers["universal horizon (reference)"] == pytest.approx(solved(2.0).x_uh)
