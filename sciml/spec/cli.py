"""Command-line glue for ``sciml analyze SPEC.yaml`` and ``sciml solve --spec SPEC.yaml`` (parse -> call)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path

from sciml.errors import UsageError


def load_problem(path: Path):
    """The problem class of a spec file (``UsageError`` for a missing or invalid file)."""
    from sciml.spec.format import load_spec
    from sciml.spec.problem import problem_class

    if not Path(path).is_file():
        raise UsageError(f"spec file {path} does not exist")
    return problem_class(load_spec(path))


def run_analyze(path: Path, overrides: Mapping[str, str], as_json: bool) -> int:
    """``sciml analyze``: print the regularity analysis (text for people, ``--json`` for tools)."""
    problem = load_problem(path)
    params = problem.resolve_params(overrides)  # runs the analysis (errors are usage errors)
    analysis = problem.analysis_for(params)
    print(json.dumps(analysis.to_dict(), indent=2) if as_json else analysis.to_text())
    return 0


def run_solve_spec(path: Path, overrides: Mapping[str, str], args: argparse.Namespace) -> int:
    """``sciml solve --spec``: the same engine, outputs and sweeps as the registered problems."""
    from sciml.pinn.cli import run_solve

    return run_solve(load_problem(path), overrides, args)
