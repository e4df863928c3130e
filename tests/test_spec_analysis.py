"""Spec files: parsing and the regularity analysis of textbook equations against their known indicial exponents.

Independent references: the exponents of Legendre (0, 0), Gauss (0, 1-c at 0; 0, c-a-b at 1), Bessel (+-nu),
associated Laguerre (0, -alpha), Chebyshev (0, 1/2), Jacobi (0, -alpha at 1; 0, -beta at -1), Kummer (0, 1-b)
and Euler-Cauchy (roots of r(r-1) + a r + b) from the textbooks (DLMF 18.8, 15.10, 10.2, 13.2).
"""

import json
from pathlib import Path

import pytest
import sympy
import torch

from sciml.cli import main
from sciml.config import from_dict
from sciml.errors import UsageError
from sciml.spec.analysis import analyze_spec
from sciml.spec.format import Spec, load_spec
from sciml.spec.totorch import compile_expr

PROBLEMS = Path(__file__).resolve().parents[1] / "problems"


def analysis(**kw):
    kw.setdefault("name", "t")
    spec = from_dict(Spec, kw)
    return analyze_spec(spec, spec.parameters)


def exps(a, x):
    (p,) = [p for p in a.points if p.x is not None and abs(p.x - x) < 1e-12]
    return {sympy.nsimplify(e) for e in p.exponents}, p


CASES = [
    # (spec, point, exponents)
    (
        dict(
            equation="(1 - x**2)*y'' - 2*x*y' + l*(l + 1)*y = 0",
            domain=[-1, 1],
            parameters={"l": 3},
            conditions=["y(1) = 1"],
        ),
        1.0,
        {0},
    ),
    (
        dict(
            equation="x*(1 - x)*y'' + (c - (a + b + 1)*x)*y' - a*b*y = 0",
            domain=[0, 1],
            parameters={"a": 0.5, "b": 0.3, "c": 1.5},
            conditions=["y(0) = 1"],
        ),
        0.0,
        {0, sympy.Rational(-1, 2)},
    ),
    (
        dict(
            equation="x*(1 - x)*y'' + (c - (a + b + 1)*x)*y' - a*b*y = 0",
            domain=[0, 1],
            parameters={"a": 0.5, "b": 0.3, "c": 1.5},
            conditions=["y(0) = 1"],
        ),
        1.0,
        {0, sympy.Rational(7, 10)},
    ),
    (
        dict(
            equation="x**2*y'' + x*y' + (x**2 - nu**2)*y = 0",
            domain=[0, 5],
            parameters={"nu": 2},
            conditions=["y(5) = 1"],
        ),
        0.0,
        {2, -2},
    ),
    (
        dict(
            equation="y'' + y'/x + (1 - nu^2/x^2)*y = 0",
            domain=[0, 5],
            parameters={"nu": 0.25},
            conditions=["y(5) = 1", "y'(5) = 0"],
            regular_at="none",
        ),
        0.0,
        {sympy.Rational(1, 4), sympy.Rational(-1, 4)},
    ),
    (
        dict(
            equation="x*y'' + (alpha + 1 - x)*y' + n*y = 0",
            domain=[0, 4],
            parameters={"n": 3, "alpha": 0.5},
            conditions=["y(0) = 1"],
        ),
        0.0,
        {0, sympy.Rational(-1, 2)},
    ),
    (
        dict(
            equation="(1 - x**2)*y'' - x*y' + n**2*y = 0", domain=[-1, 1], parameters={"n": 4}, conditions=["y(1) = 1"]
        ),
        -1.0,
        {0, sympy.Rational(1, 2)},
    ),
    (
        dict(
            equation="(1 - x**2)*y'' + (be - al - (al + be + 2)*x)*y' + n*(n + al + be + 1)*y = 0",
            domain=[-1, 1],
            parameters={"n": 2, "al": 0.5, "be": 0.25},
            conditions=["y(1) = 1"],
        ),
        1.0,
        {0, sympy.Rational(-1, 2)},
    ),
    (
        dict(
            equation="(1 - x**2)*y'' + (be - al - (al + be + 2)*x)*y' + n*(n + al + be + 1)*y = 0",
            domain=[-1, 1],
            parameters={"n": 2, "al": 0.5, "be": 0.25},
            conditions=["y(1) = 1"],
        ),
        -1.0,
        {0, sympy.Rational(-1, 4)},
    ),
    (
        dict(
            equation="x*y'' + (b - x)*y' - a*y = 0",
            domain=[0, 3],
            parameters={"a": 0.5, "b": 2.5},
            conditions=["y(0) = 1"],
        ),
        0.0,
        {0, sympy.Rational(-3, 2)},
    ),
    (
        dict(
            equation="x^2*y'' - 2*x*y' + 2*y = 0",
            domain=[0, 1],
            conditions=["y(1) = 1", "y'(1) = 3"],
            regular_at="none",
        ),
        0.0,
        {1, 2},
    ),
    (
        dict(equation="x^2*y'' + y = 0", domain=[0, 1], conditions=["y(1) = 1", "y'(1) = 0"], regular_at="none"),
        0.0,
        {sympy.Rational(1, 2) + sympy.sqrt(3) * sympy.I / 2, sympy.Rational(1, 2) - sympy.sqrt(3) * sympy.I / 2},
    ),
]


@pytest.mark.parametrize(("spec", "x0", "expected"), CASES)
def test_indicial_exponents_of_textbook_equations(spec, x0, expected):
    got, p = exps(analysis(**spec), x0)
    assert p.kind == "regular singular point"
    assert {sympy.simplify(e) for e in got} == {sympy.simplify(e) for e in expected}


def test_legendre_points_relations_and_logs():
    a = analysis(
        equation="(1 - x**2)*y'' - 2*x*y' + l*(l + 1)*y = 0",
        domain=[-1, 1],
        parameters={"l": 3},
        conditions=["y(1) = 1"],
    )
    assert [p.x for p in a.points] == [-1.0, 1.0] and all(p.imposed for p in a.points)
    assert all("logarithm" in p.log for p in a.points)
    y, y1 = sympy.symbols("y__0 y__1")
    # at x = 1 the multiplied-through residual is -2 y'(1) + 12 y(1)
    assert sympy.expand(a.points[1].relations[0] - (-2 * y1 + 12 * y)) == 0
    assert a.points[1].relation_text(("y",), "x") == "12*y(1) - 2*y'(1) = 0"
    assert a.system.conditions[0].hard is not None and (a.n_constants, a.n_constraints) == (2, 3)


def test_log_flags_follow_the_exponent_difference():
    bessel_int = exps(analysis(**CASES[3][0]), 0.0)[1]
    assert "integer" in bessel_int.log and "2" in bessel_int.branch  # analytic branch exponent 2 (J_2)
    bessel_quarter = exps(analysis(**CASES[4][0]), 0.0)[1]
    assert bessel_quarter.log.startswith("no logarithm")
    hyp_at_1 = exps(analysis(**CASES[2][0]), 1.0)[1]
    assert hyp_at_1.log.startswith("no logarithm")


@pytest.mark.parametrize("eq", ["x**3*y'' + y = 0", "x**2*y'' + y' + y = 0"])
def test_irregular_points(eq):
    a = analysis(equation=eq, domain=[0, 1], conditions=["y(1) = 1", "y'(1) = 0"], regular_at="none")
    assert a.points[0].kind == "irregular singular point" and not a.points[0].imposed
    with pytest.raises(UsageError, match="irregular singular point"):
        analysis(equation=eq, domain=[0, 1], conditions=["y(1) = 1", "y'(1) = 0"])
    with pytest.raises(UsageError, match="irregular"):
        analysis(equation=eq, domain=[0, 1], conditions=["y(1) = 1", "y'(1) = 0"], regular_at=[0])


def test_points_exact_and_numeric():
    a = analysis(equation="sin(x)*y'' + cos(x)*y' + y = 0", domain=[-1, 4], conditions=["y(1) = 1"])
    assert [p.exact for p in a.points] == ["0", "pi"]
    # x = cos(x) has no closed form: found numerically (Dottie number)
    b = analysis(equation="(x - cos(x))*y'' + y' + y = 0", domain=[0, 2], conditions=["y(0) = 1"])
    (p,) = b.points
    assert p.x == pytest.approx(0.7390851332151607, abs=1e-12) and "numeric" in p.exact
    assert p.kind == "regular singular point"  # x - cos x has a simple zero


def test_multiplied_through_and_nonlinear_and_moving():
    a = analysis(equation="y'' + 2/x*y' + y**5 = 0", domain=[0, 3], conditions=["y(0) = 1"])
    assert not a.linear and a.points[0].x == 0.0
    assert sympy.simplify(a.system.multiplied_by[0] - sympy.Symbol("x")) == 0
    # (y^2 - 1) y' = x - 1: the coefficient vanishes where y = 1 or y = -1, points that move with the solution
    m = analysis(equation="(y**2 - 1)*y' = x - 1", domain=[0, 2], conditions=["y(0) = 0"])
    moving = [p for p in m.points if p.x is None]
    assert [p.label for p in moving] == ["s1", "s2"] and all(p.imposed for p in moving)
    y = sympy.Symbol("y__0")
    assert {p.factor for p in moving} == {y - 1, y + 1}
    assert m.to_dict()["singular_points"][0]["engine"].startswith("trainable location x_s1")


def test_first_order_exponent_and_sympy_names_as_symbols():
    # x y' = a y: regular singular at 0 with exponent a (y = x^a)
    a = analysis(equation="x*y' = a*y", domain=[0, 1], parameters={"a": 2}, conditions=["y(1) = 1"])
    assert a.points[0].kind == "regular singular point" and a.points[0].exponents == ("2",)
    # E, N, gamma are sympy names (Euler's number, ...): declared here, they are the user's symbols
    b = analysis(
        equation="y'' + (E - x**2)*y + gamma*N*y = 0",
        domain=[-1, 1],
        unknowns={"E": 1.0},
        parameters={"gamma": 0.5, "N": 2},
        conditions=["y(-1) = 0", "y(1) = 0", "y'(0) = 1"],
    )
    assert {s.name for s in b.system.residuals[0].free_symbols} == {"x", "y__0", "y__2", "E"}


def test_no_singular_points_and_soft_conditions():
    a = analysis(
        equation="y'' - 2*x*y' + 2*n*y = 0", domain=[-2, 2], parameters={"n": 3}, conditions=["y(0) = 0", "y'(0) = -12"]
    )
    assert a.points == () and [c.hard is not None for c in a.system.conditions] == [True, False]


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        (dict(equation="(1 - x**2)*y'' - 2*x*y' + l(l + 1)*y = 0", parameters={"l": 3}), "cannot parse"),
        (dict(equation="(1 - x**2)*y'' - 2*x*y' + k*y = 0"), "undefined symbol 'k'"),
        (dict(equation="(1 - x**2)*y'' - 2*x*y' + 6*y = 0", conditions=["y(2) = 1"]), "outside the domain"),
        (dict(equation="y'' + y = 0", conditions=["y(0) = 1"]), "too few conditions"),
        (dict(equation="(1 - x**2)*y'' - 2*x*y' + 6*y = 0", conditions=[], regular_at="none"), "too few conditions"),
        (dict(equation="(1 - x**2)*y'' - 2*x*y' + 6*y = 0", regular_at=[0.5]), "not a singular point"),
        (dict(equation="y = x"), "no derivative"),
        (dict(equation="(y - x)*y' = 1", parameters={"c": 2}, moving={"s1": "1 + 2/c"}), "2 is outside the domain"),
    ],
)
def test_bad_specs_are_usage_errors(kw, match):
    kw = {"domain": [-1, 1], "conditions": ["y(1) = 1"], **kw}
    with pytest.raises(UsageError, match=match):
        analysis(**kw)


def test_unknown_keys_are_errors(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("name: t\nequation: \"y' = y\"\ndomain: [0, 1]\ncondition: ['y(0) = 1']\n")
    assert main(["analyze", str(f)]) == 2


def test_torch_translation_is_exact():
    x = sympy.Symbol("x")
    e = sympy.sqrt(1 + x**2) * sympy.exp(-x / 3) + x ** sympy.Rational(4, 3) - sympy.atan(x) / (2 + sympy.cos(x))
    f = compile_expr(e)
    xs = torch.linspace(0.1, 2.0, 7, dtype=torch.float64)
    want = [float(e.subs(x, float(v)).evalf(30)) for v in xs]
    torch.testing.assert_close(f({"x": xs}), torch.tensor(want, dtype=torch.float64), rtol=1e-14, atol=1e-14)


def test_cli_analyze_text_and_json(tmp_path, capsys):
    f = tmp_path / "leg.yaml"
    f.write_text(
        "name: leg\nequation: \"(1 - x**2)*y'' - 2*x*y' + l*(l + 1)*y = 0\"\ndomain: [-1, 1]\n"
        "parameters: {l: 3}\nconditions: ['y(1) = 1']\n"
    )
    assert main(["analyze", str(f), "--param", "l=5"]) == 0
    out = capsys.readouterr().out
    assert "30*y(1) - 2*y'(1) = 0" in out and "regular singular point" in out
    assert main(["analyze", str(f), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert [p["exponents"] for p in d["singular_points"]] == [["0", "0"], ["0", "0"]]
    assert d["singular_points"][0]["engine"] == "collocation point + loss term regularity@x=-1"
    assert main(["analyze", str(f), "--param", "m=1"]) == 2
    assert main(["analyze", str(tmp_path / "missing.yaml")]) == 2


def test_shipped_gravity_specs_find_their_moving_points():
    from pathlib import Path

    from sciml.spec.format import load_spec

    problems = Path(__file__).resolve().parents[1] / "problems"
    k = load_spec(problems / "khronon_bh.yaml")
    a = analyze_spec(k, k.parameters)
    fixed = [p for p in a.points if p.x is not None]
    moving = {p.label: p for p in a.points if p.x is None}
    assert [p.x for p in fixed] == [0.0]
    y, x = sympy.Symbol("y__0"), sympy.Symbol("x")
    # P1 = P2 - c^2 y^2 (the sound horizon) is trained; P2 = y^2 - 1 + x vanishes at x = 0 by y(0) = 1
    assert sympy.expand(moving["s1"].factor - (x - 3 * y**2 - 1)) == 0 and moving["s1"].imposed
    assert sympy.expand(moving["s2"].factor - (x + y**2 - 1)) == 0 and not moving["s2"].imposed
    # the trained point is s1 whatever order sympy factors in (at c = 1.2 it lists P2 first)
    (s1,) = [p for p in analyze_spec(k, {"c": 1.2}).points if p.label == "s1"]
    assert s1.imposed and sympy.expand(s1.factor - (25 * x - 11 * y**2 - 25)) == 0  # 25 P1
    # the crossing relation is B = 0 without the factor y of the equation: y = 0 on the sound horizon means x = 1,
    # where P2 vanishes too (a degenerate point); kept, y = 0 would satisfy the crossing terms at x_s = 1
    g, crossing = moving["s1"].relations
    yp = sympy.Symbol("y__1")
    b = -(y**2 - 1 + x) * x**2 * yp**2 + x**2 * (y * yp + sympy.Rational(1, 2)) ** 2 + 2 * (y**2 - 1 + x) ** 2
    assert sympy.simplify(crossing / b).is_number
    b = load_spec(problems / "bondi.yaml")
    a = analyze_spec(b, b.parameters)
    # the horizon r = 2M lies outside [20, 140.5]; f + w^2 > 0 and exp(L) > 0 are recognised as never zero: only
    # the sonic point remains, with two relations (v = a and the Euler numerator) for one trainable location
    assert [p.label for p in a.points] == ["s1"] and a.points[0].rows == (1,) and len(a.points[0].relations) == 2


def test_constant_denominators_are_not_multiplied_and_weights_must_be_positive():
    a = analysis(equation="x**2*y'' + x*y' + (x**2 - 1/4)*y = 0", domain=[0, 5], conditions=["y(5) = 1"])
    assert a.system.multiplied_by == (1,)
    with pytest.raises(UsageError, match="positive"):
        analysis(equation="y'' + y = 0", domain=[-1, 1], conditions=["y(1) = 1", "y(-1) = 1"], weight="x")


PARKER = dict(
    variable="r",
    functions=["v"],
    equation="(v - 1/v)*v' = 2/r - 2/r**2",
    domain=[0.5, 3],
    regular_at=["s1"],
)


def test_branch_picks_a_root_of_the_lhopital_quadratic():
    """Parker wind: at the sonic point r = 1, v = 1 the two crossing solutions have v' = +1 (the accelerating wind)
    and v' = -1 (the decelerating branch): v'^2 = 1 from differentiating (v^2 - 1) v' = 2 v (r - 1)/r^2 there."""
    plain = analysis(**PARKER)
    s1 = plain.points[0]
    assert s1.label == "s1" and s1.slopes == "r = 1, v = 1: v' = -1, 1" and len(s1.relations) == 2
    assert "no branch chosen" in plain.to_text()
    r, v, vp = sympy.symbols("r v__0 v__1")
    for choice, good, bad in (("larger", 1, -1), ("smaller", -1, 1)):
        p = analysis(**PARKER, branch={"s1": choice}).points[0]
        assert p.slope_choice == choice and len(p.relations) == 3
        rel = compile_expr(p.relations[2])
        at = {"r": torch.tensor(1.0, dtype=torch.float64), "v__0": torch.tensor(1.0, dtype=torch.float64)}
        assert abs(float(rel({**at, "v__1": torch.tensor(float(good), dtype=torch.float64)}))) < 1e-14
        assert abs(float(rel({**at, "v__1": torch.tensor(float(bad), dtype=torch.float64)}))) > 1.0
    # the crossing relation has no factor v: v = 0 cannot meet v = 1
    assert sympy.simplify(plain.points[0].relations[1] * r**2 / (r - 1)).is_number


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({**PARKER, "branch": {"s3": "larger"}}, "s3 is not a moving singular point"),
        ({**PARKER, "branch": {"s1": "up"}}, "larger, smaller"),
        # second order with a leading coefficient free of y': the crossing fixes y'' by a linear relation
        (
            dict(equation="(y - x)*y'' + y' - 1 = 0", domain=[0, 1], conditions=["y(0) = 1"], branch={"s1": "larger"}),
            "no L'Hôpital quadratic",
        ),
    ],
)
def test_bad_branches_are_usage_errors(kw, match):
    with pytest.raises((UsageError, ValueError), match=match):
        analysis(**kw)


def test_forced_series_at_a_degenerate_point():
    """khronon at x = 0: a_1..a_3 = -1/2, -1/8, -1/16 are forced through double roots for every c, a_4 is free.
    Independent reference: the classical solver's origin series (problems/_khronon_reference.py), whose first four
    coefficients do not depend on the free charge k."""
    import numpy as np

    from sciml.problems._khronon_reference import origin_series

    k = load_spec(PROBLEMS / "khronon_bh.yaml")
    for c in (2.0, 10.0):
        a = analyze_spec(k, {"c": c})
        assert "series     : y = -x**3/16 - x**2/8 - x/2 + 1 + O(x**4)" in a.to_text()
        (p0,) = [p for p in a.points if p.x == 0.0]
        got = np.array([float(a) for a in p0.series.coeffs])
        for charge in (-0.3, 0.1):
            np.testing.assert_allclose(got, origin_series(charge, 1 / c**2)[:4], rtol=0, atol=1e-15)
        assert p0.series.order == 4 and p0.series.scale == 1 / 16
    assert origin_series(-0.3, 0.25)[4] != origin_series(0.1, 0.25)[4]  # a_4: the free charge
    # x y'' + (y' - 1)^2 = 0, y(0) = 0: (a_1 - 1)^2 = 0 at the lowest order (a double root), then a_2 = 0 (simple)
    (p,) = analysis(equation="x*y'' + (y' - 1)**2 = 0", domain=[0, 1], conditions=["y(0) = 0", "y(1) = 1"]).points
    assert p.series.coeffs == (0, 1)
    # linear equations: every coefficient is a simple root, pinned linearly by the residual: nothing built in
    leg = analysis(equation="(1 - x**2)*y'' - 2*x*y' + 12*y = 0", domain=[-1, 1], conditions=["y(1) = 1"])
    assert all(p.series is None for p in leg.points)


def test_riemann_p_equation_has_the_exponents_it_is_built_from():
    """Riemann's (Papperitz's) equation with singular points 0, 1, infinity is built from its exponents:
    y'' + ((1 - al - al2)/x + (1 - be - be2)/(x - 1)) y' + (-al al2/x + be be2/(x - 1) + g) y/(x (x - 1)) = 0
    has exponents {al, al2} at x = 0 and {be, be2} at x = 1 (DLMF 15.11.1, with c -> infinity)."""
    al, al2, be, be2 = sympy.Rational(1, 3), sympy.Rational(1, 4), sympy.Rational(2, 5), sympy.Rational(-1, 7)
    a = analysis(
        equation="y'' + ((1 - al - al2)/x + (1 - be - be2)/(x - 1))*y' "
        "+ (-al*al2/x + be*be2/(x - 1) + g)*y/(x*(x - 1))",
        domain=[0, 1],
        parameters={"al": 1 / 3, "al2": 0.25, "be": 0.4, "be2": -1 / 7, "g": 0.3},
        conditions=["y(1/2) = 1", "y'(1/2) = 0"],
        regular_at="none",
    )
    assert exps(a, 0.0)[0] == {al, al2} and exps(a, 1.0)[0] == {be, be2}
    assert exps(a, 0.0)[1].log.startswith("no logarithm")
