"""Parameter ranges and accuracy targets: the resolution hook, its precedence, and out-of-target warnings."""

import logging
import time

import numpy as np
import pytest
import yaml
from scipy.special import eval_legendre

from sciml.cli import main
from sciml.pinn.cli import add_solve_arguments, solver_config
from sciml.pinn.config import SolverConfig, build_config, problem_layers
from sciml.pinn.train import solve
from sciml.problems.legendre import Legendre
from sciml.registry import Registry

QUICK = ["--steps", "0", "--lm-steps", "1", "--time-limit", "60"]


def _cfg(l):
    return build_config(*problem_layers(Legendre, Legendre.resolve_params({"l": l})))


def test_legendre_resolution_grows_monotonically_with_the_degree():
    cfgs = [_cfg(l) for l in range(41)]
    width = [min(c.network.hidden) for c in cfgs]
    points = [c.collocation.n_points for c in cfgs]
    lm = [c.lm.max_iter for c in cfgs]
    for seq in (width, points, lm):
        assert all(b >= a for a, b in zip(seq, seq[1:], strict=False)), seq
    # more resolution at the top than at the bottom, and the low degrees keep the engine defaults
    assert width[20] > width[0] and points[20] > points[0]
    assert cfgs[0] == build_config(Legendre.solver_defaults) == SolverConfig()
    # enough collocation points to resolve the l zeros several times over
    assert all(n >= 3 * l for l, n in enumerate(points))


def _args(argv):
    import argparse

    ap = argparse.ArgumentParser()
    add_solve_arguments(ap)
    return ap.parse_args(argv)


def test_explicit_settings_win_over_the_resolution_hook(tmp_path):
    params = Legendre.resolve_params({"l": 20})
    hooked = solver_config(Legendre, _args([]), None, params)
    assert hooked.network.hidden == _cfg(20).network.hidden != SolverConfig().network.hidden
    # flags beat the hook
    cfg = solver_config(Legendre, _args(["--lm-steps", "7", "--steps", "3"]), None, params)
    assert (cfg.lm.max_iter, cfg.adam.steps) == (7, 3)
    assert cfg.network.hidden == hooked.network.hidden  # keys not given still come from the hook
    # a --config file beats the hook, key by key
    file_layer = {"network": {"hidden": [5, 5]}, "collocation": {"n_points": 9}}
    cfg = solver_config(Legendre, _args([]), file_layer, params)
    assert cfg.network.hidden == (5, 5) and cfg.collocation.n_points == 9
    assert cfg.lm.max_iter == hooked.lm.max_iter


def test_sweep_resolves_the_settings_per_member(tmp_path):
    out = tmp_path / "sweep"
    assert main(["-q", "solve", "legendre", "--sweep", "l=1,20", "--out", str(out), *QUICK]) == 0
    hidden = {}
    for l in (1, 20):
        run = yaml.safe_load((out / f"l={l}" / "config.yaml").read_text())
        hidden[l] = tuple(run["solver"]["network"]["hidden"])
        assert run["solver"]["lm"]["max_iter"] == 1  # the flag, for every member
    assert hidden[1] == _cfg(1).network.hidden and hidden[20] == _cfg(20).network.hidden
    assert hidden[1] != hidden[20]


def test_out_of_target_degree_warns_with_the_reason_and_still_solves(tmp_path, capsys):
    code = main(["solve", "legendre", "--param", "l=30", "--out", str(tmp_path / "l30"), *QUICK])
    assert code == 0
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if "accuracy target not expected" in ln]
    assert len(lines) == 1, err
    assert "WARNING" in lines[0] and "l=30 is outside [0, 20]" in lines[0] and "zeros" in lines[0]
    assert (tmp_path / "l30" / "metrics.json").exists()


def test_in_target_degree_does_not_warn(caplog):
    with caplog.at_level(logging.WARNING, logger="sciml"):
        solve(Legendre(l=20), build_config({"adam": {"steps": 0}, "lm": {"max_iter": 0}}))
    assert not [r for r in caplog.records if "accuracy target" in r.getMessage()]


def test_beyond_the_valid_range_is_refused_with_exit_2(tmp_path, capsys):
    code = main(["solve", "legendre", "--param", "l=41", "--out", str(tmp_path / "x"), *QUICK])
    assert code == 2
    err = capsys.readouterr().err
    assert "l=41 is out of range" in err and "[0, 40]" in err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("name", ["legendre", "hypergeometric", "khronon-bh", "bondi"])
def test_every_builtin_problem_states_its_target(name):
    cls = Registry().get(name)
    assert cls.accuracy_target
    text = cls.describe()
    assert "accuracy target (default solve):" in text and cls.accuracy_target.splitlines()[0] in text
    # the defaults are inside the target region
    assert cls.accuracy_warnings(cls.resolve_params({})) == []


def test_describe_shows_the_target_interval():
    assert "target met for [0, 20]" in Legendre.describe()


@pytest.mark.slow
def test_the_hook_makes_a_high_degree_solvable_at_equal_cost():
    """l = 10 on a CI budget (80 Levenberg-Marquardt steps): with the problem's resolution (exponential
    normalisation factor, Chebyshev-started wide layer, ~400 points) against scipy's P_10, vs the engine defaults.

    Measured: 1.05e-6 with the hook, 1.03e-3 without (~18 s CPU together). The full default solve reaches
    <= 1e-7 for l = 0..20 (bench/pinn_ranges.py; l = 10: 2.4e-8)."""
    l = 10
    budget = {"lm": {"max_iter": 80}, "time_limit_s": 600.0}
    x = np.linspace(-1, 1, 1001)
    ref = eval_legendre(l, x)

    def err(cfg):
        res = solve(Legendre(l=l), cfg)
        return np.linalg.norm(res.model.predict(x)[:, 0] - ref) / np.linalg.norm(ref)

    t0 = time.process_time()
    hooked = err(build_config(*problem_layers(Legendre, {"l": l}), budget))
    plain = err(build_config(Legendre.solver_defaults, budget))
    print(f"hooked {hooked:.2e}, plain {plain:.2e}, cpu {time.process_time() - t0:.1f} s")
    assert hooked <= 1e-4, hooked
    assert plain > 30 * hooked, (plain, hooked)


def test_chebyshev_first_layer_places_units_at_chebyshev_points():
    import torch

    from sciml.pinn.model import chebyshev_first_layer

    n = 16
    layer = torch.nn.Linear(1, n, dtype=torch.float64)
    chebyshev_first_layer(layer, 2.0)
    w, b = layer.weight[:, 0].detach().numpy(), layer.bias.detach().numpy()
    centres = -b / w  # where each unit tanh(w xi + b) switches
    np.testing.assert_allclose(centres, -np.cos(np.pi * (np.arange(n) + 0.5) / n), atol=1e-14)
    spacing = np.pi * np.sqrt(1 - centres**2) / n + np.pi**2 / (2 * n**2)
    np.testing.assert_allclose(np.abs(w), 2.0 / spacing, rtol=1e-12)  # steeper where the nodes crowd (the ends)
    assert abs(w[0]) > 3 * abs(w[n // 2]) and set(np.sign(w)) == {-1.0, 1.0}
    with pytest.raises(ValueError, match="first_layer"):
        build_config({"network": {"first_layer": "fourier"}})
