"""CLI behaviour: help, version, list, describe, error paths and exit codes (0 ok, 2 usage, 1 runtime)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sciml import __version__
from sciml.cli import main, parse_param
from sciml.errors import UsageError

from .plugin_util import make_plugin

SCIML = str(Path(sys.executable).with_name("sciml"))


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    make_plugin(tmp_path, "cliplugin", {"toy-decay": ("decay",)})
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"sciml {__version__}"


@pytest.mark.parametrize("argv", [["--help"], ["solve", "--help"], ["data", "--help"], ["forecast", "--help"]])
def test_help_exits_zero(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "usage:" in capsys.readouterr().out


def test_list_shows_problems_with_summary(plugin, capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "toy-decay" in out and "a plug-in test problem" in out and "aliases: decay" in out


def test_describe(plugin, capsys):
    assert main(["describe", "decay"]) == 0
    out = capsys.readouterr().out
    for piece in ["equation:", "y' = k y", "parameters:", "k = 1", "valid [0, 10]", "integer in [0, 8]"]:
        assert piece in out


def test_unknown_problem_is_one_line_exit_2(plugin, capsys):
    assert main(["describe", "toy-decy"]) == 2
    err = capsys.readouterr().err
    assert err == "error: unknown problem 'toy-decy'; did you mean 'toy-decay'? (see: sciml list)\n"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["solve", "toy-decay", "--param", "k"], "--param expects KEY=VALUE"),
        (["solve", "legendre", "--param", "q=1"], "has no parameter 'q'"),
        (["solve", "legendre", "--param", "l=-1"], "out of range"),
        (["solve", "toy-decay"], "is not a PINN problem"),
        (["frobnicate"], "invalid choice"),
        (["list", "--bogus"], "unrecognized arguments"),
    ],
)
def test_usage_errors_exit_2(plugin, capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_parse_param():
    assert parse_param(" l = 3 ") == ("l", "3")
    with pytest.raises(UsageError):
        parse_param("=3")


def test_runtime_failure_exit_1_and_debug_traceback(plugin, capsys, monkeypatch):
    import sciml.cli as cli

    def boom(args):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(cli, "_cmd_list", boom)
    assert main(["list"]) == 1
    err = capsys.readouterr().err
    assert "disk on fire" in err and "Traceback" not in err and "--debug" in err
    assert main(["--debug", "list"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_installed_script_exit_codes(plugin):
    env = dict(os.environ, PYTHONPATH=str(plugin))
    ok = subprocess.run([SCIML, "list"], capture_output=True, text=True, env=env)
    assert ok.returncode == 0 and "toy-decay" in ok.stdout
    bad = subprocess.run([SCIML, "describe", "nope-nope"], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and bad.stderr.startswith("error: unknown problem 'nope-nope'")


def test_cli_start_up_imports_no_heavy_libraries():
    """`sciml --help`/`list` must stay instant: building the parser imports neither torch, DeepXDE nor xarray."""
    code = (
        "import sys, sciml.cli; sciml.cli.build_parser();"
        "print(sorted(m for m in ('torch', 'deepxde', 'xarray', 'torch_harmonics') if m in sys.modules))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


def test_built_in_problems_are_registered(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("legendre", "hypergeometric", "khronon-bh", "bondi"):
        assert name in out
    assert main(["describe", "legendr"]) == 2
    assert capsys.readouterr().err == "error: unknown problem 'legendr'; did you mean 'legendre'? (see: sciml list)\n"
