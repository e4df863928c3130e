"""Loss-weighting strategies: each update rule against a hand computation (numpy only, no training)."""

import math

import numpy as np
import pytest

from sciml.errors import UsageError
from sciml.pinn.config import WeightingConfig
from sciml.pinn.weighting import (
    SCHEMES,
    Fixed,
    GradNormBalance,
    LRAnnealing,
    NTKTrace,
    ReLoBRaLo,
    SoftAdapt,
    make_weighting,
)

NAMES = ["residual", "regularity@x=1", "bc@x=0"]


def test_fixed_keeps_initial_weights():
    w = Fixed(initial={"bc@x=0": 10.0})
    assert w.start(NAMES) == {"residual": 1.0, "regularity@x=1": 1.0, "bc@x=0": 10.0}
    assert w.update({n: 1.0 for n in NAMES}) == {"residual": 1.0, "regularity@x=1": 1.0, "bc@x=0": 10.0}


def test_initial_weight_for_unknown_term_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown loss terms"):
        Fixed(initial={"nope": 2.0}).start(NAMES)


def test_lra_rule_max_over_mean():
    w = LRAnnealing(alpha=0.5)
    w.start(NAMES)
    g = {
        "residual": np.array([1.0, -4.0, 2.0]),  # max |g| = 4
        "regularity@x=1": np.array([0.5, -0.5, 0.5]),  # mean |g| = 0.5 -> target 8
        "bc@x=0": np.array([2.0, 2.0, -2.0]),  # mean |g| = 2 -> target 2
    }
    out = w.update({n: 1.0 for n in NAMES}, gradients=g)
    assert out["residual"] == 1.0
    assert out["regularity@x=1"] == pytest.approx(0.5 * 1 + 0.5 * 8)
    assert out["bc@x=0"] == pytest.approx(0.5 * 1 + 0.5 * 2)


def test_gradnorm_equalises_norms_at_the_fixed_point():
    w = GradNormBalance(alpha=0.0)  # no smoothing: the weights are the targets
    w.start(NAMES)
    g = {"residual": np.array([3.0, 4.0]), "regularity@x=1": np.array([0.0, 1.0]), "bc@x=0": np.array([0.0, 10.0])}
    out = w.update({n: 1.0 for n in NAMES}, gradients=g)
    weighted = [out[n] * np.linalg.norm(g[n]) for n in NAMES]
    assert np.allclose(weighted, weighted[0], rtol=1e-14)
    assert weighted[0] == pytest.approx(np.mean([5.0, 1.0, 10.0]))


def test_ntk_trace_rule():
    w = NTKTrace(alpha=0.0)
    w.start(NAMES)
    ntk = {"residual": 100.0, "regularity@x=1": 1.0, "bc@x=0": 4.0}
    out = w.update({n: 1.0 for n in NAMES}, ntk=ntk)
    assert out == pytest.approx({"residual": 1.05, "regularity@x=1": 105.0, "bc@x=0": 26.25})


def test_softadapt_favours_the_stalling_term():
    w = SoftAdapt(temperature=0.1)
    w.start(NAMES)
    assert w.update({"residual": 1.0, "regularity@x=1": 1.0, "bc@x=0": 1.0}) == {n: 1.0 for n in NAMES}
    out = w.update({"residual": 0.5, "regularity@x=1": 1.0, "bc@x=0": 0.9})
    s = np.array([-0.5, 0.0, -0.1]) / 0.1
    expected = 3 * np.exp(s - s.max()) / np.exp(s - s.max()).sum()
    assert [out[n] for n in NAMES] == pytest.approx(expected.tolist(), rel=1e-12)
    assert sum(out.values()) == pytest.approx(3.0)
    assert out["regularity@x=1"] > out["bc@x=0"] > out["residual"]


def test_relobralo_without_lookback_is_the_formula():
    w = ReLoBRaLo(alpha=0.9, temperature=1.0, rho=1.0)  # rho = 1: always keep the previous weights
    w.start(NAMES)
    l0 = {"residual": 1.0, "regularity@x=1": 2.0, "bc@x=0": 4.0}
    assert w.update(l0) == {n: 1.0 for n in NAMES}
    l1 = {"residual": 0.5, "regularity@x=1": 2.0, "bc@x=0": 1.0}
    out = w.update(l1)
    ratio = np.array([0.5, 1.0, 0.25])
    bal = 3 * np.exp(ratio) / np.exp(ratio).sum()
    assert [out[n] for n in NAMES] == pytest.approx((0.9 * 1.0 + 0.1 * bal).tolist(), rel=1e-12)
    assert sum(out.values()) == pytest.approx(3.0)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_make_weighting_builds_every_scheme(scheme):
    w = make_weighting(WeightingConfig(scheme=scheme, update_every=5))
    assert w.name == scheme and w.update_every == 5


def test_bad_weighting_config_values():
    with pytest.raises(ValueError, match="alpha"):
        WeightingConfig(alpha=1.5)
    with pytest.raises(ValueError, match="initial"):
        WeightingConfig(initial={"residual": math.nan})


def test_one_registry_of_weighting_strategies():
    """CLI choices, config check, factory and docs all come from WEIGHTINGS (name -> class)."""
    from pathlib import Path

    from sciml.pinn.config import WeightingConfig
    from sciml.pinn.weighting import WEIGHTINGS, make_weighting

    assert list(WEIGHTINGS) == ["fixed", "lra", "gradnorm", "ntk", "softadapt", "relobralo"]
    for name, cls in WEIGHTINGS.items():
        strategy = make_weighting(WeightingConfig(scheme=name, alpha=0.5, temperature=0.2))
        assert type(strategy) is cls and strategy.name == name
        assert getattr(strategy, "alpha", 0.5) == 0.5 and getattr(strategy, "temperature", 0.2) == 0.2
    with pytest.raises(ValueError, match=r"weighting.scheme 'lr' is unknown \(valid: fixed, lra, gradnorm"):
        WeightingConfig(scheme="lr")
    docs = (Path(__file__).resolve().parents[1] / "docs" / "pinn.md").read_text()
    assert f"--weighting {'|'.join(WEIGHTINGS)}" in docs
