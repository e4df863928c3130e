"""``sciml solve``: result files and their contents, sweeps, and bad input (exit 2, nothing written)."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml

from sciml.cli import main
from sciml.errors import UsageError
from sciml.pinn.cli import parse_sweep
from sciml.problems.legendre import Legendre

TINY = ["--steps", "10", "--lm-steps", "15", "--time-limit", "60"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("solve") / "leg"
    code = main(
        [
            "-q",
            "solve",
            "legendre",
            "--param",
            "l=2",
            "--out",
            str(out),
            "--weighting",
            "softadapt",
            "--seed",
            "3",
            *TINY,
        ]
    )
    assert code == 0
    return out


def test_solve_writes_every_result_file(run_dir, capsys):
    assert {p.name for p in run_dir.iterdir()} == {
        "solution.nc",
        "metrics.json",
        "history.csv",
        "solution.png",
        "config.yaml",
        "run.json",
    }


def test_solution_netcdf_contents(run_dir):
    ds = xr.open_dataset(run_dir / "solution.nc", engine="h5netcdf")
    x = ds["x"].values
    assert x[0] == -1.0 and x[-1] == 1.0 and len(x) == 2001
    np.testing.assert_allclose(ds["y_ref"].values, 1.5 * x**2 - 0.5, atol=1e-14)  # P_2, independent of scipy
    np.testing.assert_allclose(ds["y_error"].values, ds["y"].values - ds["y_ref"].values, atol=0)
    assert "residual_ode" in ds and int(ds.attrs["param_l"]) == 2
    assert list(np.atleast_1d(ds.attrs["singular_points"])) == [-1.0, 1.0]


def test_metrics_and_history_are_consistent(run_dir):
    m = json.loads((run_dir / "metrics.json").read_text())
    ds = xr.open_dataset(run_dir / "solution.nc", engine="h5netcdf")
    err = ds["y_error"].values
    assert m["rel_l2"] == pytest.approx(np.linalg.norm(err) / np.linalg.norm(ds["y_ref"].values), rel=1e-9)
    assert m["rel_l2"] < 1e-4  # 25 steps on P_2
    assert m["weighting"] == "softadapt"
    assert set(m["final_weights"]) == {"residual", "regularity@x=-1", "regularity@x=1"}
    assert set(m["singular_points"]) == {"regularity@x=-1", "regularity@x=1"}
    assert m["steps"]["adam"] == 10 and m["steps"]["total"] == sum(m["steps"][k] for k in ("adam", "lbfgs", "lm"))
    header = (run_dir / "history.csv").read_text().splitlines()[0].split(",")
    for name in ("stage", "step", "loss", "error", "L:residual", "w:regularity@x=1", "wL:regularity@x=-1"):
        assert name in header
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert cfg["params"] == {"l": 2} and cfg["solver"]["seed"] == 3
    assert cfg["solver"]["weighting"]["scheme"] == "softadapt"


def test_config_yaml_of_a_run_can_be_fed_back(run_dir, tmp_path):
    out = tmp_path / "again"
    code = main(
        [
            "-q",
            "solve",
            "legendre",
            "--param",
            "l=2",
            "--out",
            str(out),
            "--config",
            str(run_dir / "config.yaml"),
            "--steps",
            "0",
            "--lm-steps",
            "1",
        ]
    )
    assert code == 0
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["solver"]["weighting"]["scheme"] == "softadapt" and cfg["solver"]["adam"]["steps"] == 0


def test_sweep_writes_table_and_one_directory_per_value(tmp_path, capsys):
    out = tmp_path / "sweep"
    assert (
        main(["-q", "solve", "legendre", "--sweep", "l=0:1", "--out", str(out), "--steps", "0", "--lm-steps", "3"]) == 0
    )
    rows = json.loads((out / "sweep.json").read_text())["rows"]
    assert [r["l"] for r in rows] == [0, 1]
    assert (out / "sweep.csv").read_text().splitlines()[0].startswith("l,rel_l2")
    assert (out / "sweep.png").exists() and (out / "l=0" / "metrics.json").exists()
    assert "sweep over l" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["solve", "legendre", "--param", "l=2.5"],
        ["solve", "legendre", "--param", "m=1"],
        ["solve", "legendre", "--param", "l=-1"],
        ["solve", "nosuchproblem"],
        ["solve", "legendre", "--sweep", "l=0-8"],
        ["solve", "legendre", "--sweep", "l=5:1"],
        ["solve", "legendre", "--sweep", "q=0:2"],
        ["solve", "legendre", "--sweep", "l=0:8:0.5"],  # 0.5 is not a valid degree: caught before any work
        ["solve", "legendre", "--weighting", "magic"],
        ["solve", "hypergeometric", "--param", "c=-1"],
    ],
)
def test_bad_input_exits_2_and_writes_nothing(argv, tmp_path, capsys):
    out = tmp_path / "out"
    assert main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    assert not out.exists()


def test_unwritable_out_exits_2(tmp_path, capsys):
    # A read-only directory stops ordinary users but not root (CI runs as root); nothing, not even root, can
    # create a directory inside /proc, so that case runs everywhere.
    targets = [Path("/proc/sciml-out/x")]
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    if os.geteuid() != 0:
        targets.append(ro / "x")
    try:
        for target in targets:
            assert main(["solve", "legendre", "--out", str(target)]) == 2
            err = capsys.readouterr().err
            assert "cannot write" in err and err.count("\n") == 1
            assert not target.exists()
    finally:
        ro.chmod(0o700)


def test_parse_sweep_forms():
    assert parse_sweep("l=0:8", Legendre) == ("l", [float(i) for i in range(9)])
    assert parse_sweep("l=0:4:2", Legendre) == ("l", [0.0, 2.0, 4.0])
    assert parse_sweep("l=1,3,10", Legendre) == ("l", [1.0, 3.0, 10.0])
    with pytest.raises(UsageError, match="KEY=START:STOP"):
        parse_sweep("l", Legendre)


def test_out_below_a_regular_file_exits_2(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("not a directory")
    assert main(["solve", "legendre", "--out", str(f / "sub")]) == 2
    assert capsys.readouterr().err.startswith("error: --out")
    assert main(["solve", "legendre", "--out", str(f)]) == 2
    assert "not a directory" in capsys.readouterr().err
