"""Command-line glue for ``sciml solve`` (argparse only at import time; DeepXDE is imported on use)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path

from sciml.errors import SciMLError
from sciml.problem import ProblemSpec


def add_solve_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``sciml solve`` besides the problem name and ``--param``."""
    parser.add_argument("--out", type=Path, default=None, help="result directory (default: runs/PROBLEM)")
    parser.add_argument("--config", type=Path, default=None, help="solver config YAML (see README)")


def run_solve(problem: type[ProblemSpec], overrides: Mapping[str, str], args: argparse.Namespace) -> int:
    params = problem.resolve_params(overrides)
    raise SciMLError(f"the PINN engine is not built yet; {problem.name} parameters {params} are valid")
