"""Problem result hooks in the engine: extra metrics, plot markers, extra curves; the sweep's profile overlay."""

import json

import numpy as np
import pytest
import xarray as xr

from sciml.pinn.cli import run_sweep
from sciml.pinn.config import build_config
from sciml.pinn.problem import AbstractProblem
from sciml.pinn.results import plot_extras, solution_dataset, summary_text, write_results
from sciml.pinn.train import solve
from sciml.plotting.pinn import plot_solution
from sciml.problems.legendre import Legendre

TINY = {"adam": {"steps": 10}, "lm": {"max_iter": 15}, "time_limit_s": 60.0}


class HookedLegendre(Legendre):
    """Legendre with all three hooks: y(0) error, a marker at the node of P_2, y' on the y panel."""

    name = "hooked-legendre"

    def extra_metrics(self, x, pred):
        i = int(np.argmin(np.abs(x)))
        return {"abs_error@x=0": float(abs(pred[i, 0] - self.reference_solution(x[i : i + 1])[0, 0])), "n": len(x)}

    def plot_markers(self, unknowns):
        return {"node of P_2": 1 / np.sqrt(3.0), "never drawn": float("nan")}

    def extra_curves(self, x, pred):
        return {"3x (= P_2')": ("y", 3.0 * x)}


def _cfg():
    return build_config(Legendre.solver_defaults, TINY)


@pytest.fixture(scope="module")
def hooked(tmp_path_factory):
    result = solve(HookedLegendre(l=2), _cfg())
    out = tmp_path_factory.mktemp("hooks") / "run"
    metrics = write_results(result, out, {"problem": "hooked-legendre", "params": {"l": 2}})
    return result, metrics, out


def test_defaults_are_no_ops():
    p = Legendre(l=2)
    x = p.eval_grid(11)
    assert isinstance(p, AbstractProblem)
    assert p.extra_metrics(x, np.zeros((len(x), 1))) == {}
    assert p.plot_markers({}) == {} and p.extra_curves(x, np.zeros((len(x), 1))) == {}


def test_extra_metrics_in_metrics_json_and_summary(hooked):
    result, metrics, out = hooked
    m = json.loads((out / "metrics.json").read_text())
    assert set(m["extra"]) == {"abs_error@x=0", "n"}
    assert m["extra"]["n"] == m["n_eval_points"] == 2001  # computed on the engine's dense grid
    ds = xr.open_dataset(out / "solution.nc", engine="h5netcdf")
    i = int(np.argmin(np.abs(ds["x"].values)))
    assert ds["x"].values[i] == 0.0
    # independent reference P_2(0) = -1/2
    assert m["extra"]["abs_error@x=0"] == pytest.approx(abs(ds["y"].values[i] + 0.5), rel=1e-9, abs=1e-15)
    assert m["extra"]["abs_error@x=0"] < 1e-3
    text = summary_text(result, metrics, out)
    assert "targets" in text and "abs_error@x=0 = " in text and len(text.splitlines()) < 25


def _pixels(path):
    import matplotlib.image

    return matplotlib.image.imread(str(path))


def test_markers_and_curves_change_solution_png(hooked, tmp_path):
    result, _, out = hooked
    png = out / "solution.png"
    img = _pixels(png)
    assert png.stat().st_size > 20_000 and img.shape[0] > 400 and img[..., :3].std() > 0.05
    ds = solution_dataset(result)
    extras = plot_extras(result, ds)
    assert extras["markers"]["node of P_2"] == pytest.approx(3**-0.5) and "3x (= P_2')" in extras["curves"]
    plot_solution(ds, tmp_path / "plain.png")
    plot_solution(ds, tmp_path / "markers.png", markers=extras["markers"])
    plot_solution(ds, tmp_path / "both.png", markers=extras["markers"], curves=extras["curves"])
    plain, marked = _pixels(tmp_path / "plain.png"), _pixels(tmp_path / "markers.png")
    both = _pixels(tmp_path / "both.png")
    assert plain.shape == img.shape == marked.shape == both.shape
    # drawn the same way but for one addition each: the marker lines, then the extra curve
    assert np.abs(marked - plain).sum() > 0 and np.abs(both - marked).sum() > 0
    with pytest.raises(ValueError, match="output 'v'"):
        plot_solution(ds, tmp_path / "bad.png", curves={"a": ("v", ds["x"].values)})


def test_problem_without_hooks_still_writes_results(tmp_path):
    result = solve(Legendre(l=1), _cfg())
    m = write_results(result, tmp_path / "plain", {"problem": "legendre", "params": {"l": 1}})
    assert m["extra"] == {} and "targets" not in summary_text(result, m)
    assert (tmp_path / "plain" / "solution.png").stat().st_size > 20_000


def test_sweep_writes_profile_overlay(tmp_path, capsys):
    out = tmp_path / "sweep"
    family = [HookedLegendre.resolve_params({"l": v}) for v in (1, 2)]
    assert run_sweep(HookedLegendre, "l", family, _cfg(), out, quiet=True) == 0
    png = out / "sweep_profiles.png"
    img = _pixels(png)
    assert png.stat().st_size > 20_000 and img[..., :3].std() > 0.05
    header = (out / "sweep.csv").read_text().splitlines()[0].split(",")
    assert "abs_error@x=0" in header  # the extra metrics are columns of the sweep table
    rows = json.loads((out / "sweep.json").read_text())["rows"]
    assert [r["l"] for r in rows] == [1, 2] and all(r["abs_error@x=0"] < 1e-3 for r in rows)
    assert "sweep_profiles.png" in capsys.readouterr().out
