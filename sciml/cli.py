"""The ``sciml`` command line: parse -> config -> call. No numerical logic lives here.

Exit codes: 0 success, 2 usage error (bad command line, unknown problem, invalid parameter or config),
1 runtime failure. Errors are printed as one line; ``--debug`` shows the traceback.

Command groups ``data``, ``forecast`` and ``plot`` are filled by entry points of group ``sciml.commands``
(name ``GROUP`` or ``GROUP.anything``, value ``module:register`` where ``register(subparsers)`` adds
sub-commands), so ``sciml/`` never imports the sub-packages that provide them by name.
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from collections.abc import Sequence
from importlib.metadata import entry_points
from pathlib import Path

from sciml import __version__
from sciml.errors import EXIT_USAGE, SciMLError, UsageError, explain
from sciml.logs import setup_logging

LOGGER = logging.getLogger(__name__)
COMMAND_GROUPS = {
    "data": "prepare and inspect forecasting datasets",
    "forecast": "train, run and score forecasting models",
    "plot": "plot results",
}


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so main() owns exit codes and message format."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message} (see: {self.prog} --help)")


def parse_param(text: str) -> tuple[str, str]:
    """``'l=3'`` -> ``('l', '3')``; anything else is a usage error."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise UsageError(f"--param expects KEY=VALUE (one per flag), got {text!r}")
    return key.strip(), value.strip()


def _cmd_list(args: argparse.Namespace) -> int:
    from sciml.registry import Registry

    problems = Registry().problems()
    if not problems:
        print("no problems are installed")
        return 0
    width = max(len(p.name) for p in problems)
    for p in problems:
        alias = f" (aliases: {', '.join(p.aliases)})" if p.aliases else ""
        print(f"{p.name:<{width}}  {p.summary}{alias}")
    return 0


def _cmd_describe(args: argparse.Namespace) -> int:
    from sciml.registry import Registry

    print(Registry().get(args.problem).describe())
    return 0


def _cmd_solve(args: argparse.Namespace) -> int:
    overrides = dict(parse_param(p) for p in args.param)
    if (args.problem is None) == (args.spec is None):
        raise UsageError("sciml solve: give a problem name or --spec SPEC.yaml (one of them)")
    if args.spec is not None:
        from sciml.spec.cli import run_solve_spec

        return run_solve_spec(args.spec, overrides, args)
    from sciml.pinn.cli import run_solve
    from sciml.registry import Registry

    return run_solve(Registry().get(args.problem), overrides, args)


def _cmd_analyze(args: argparse.Namespace) -> int:
    from sciml.spec.cli import run_analyze

    return run_analyze(args.spec, dict(parse_param(p) for p in args.param), args.json)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sciml", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"sciml {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    verbosity.add_argument("-q", "--quiet", action="store_true", help="warnings and results only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("list", help="list the registered problems")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("describe", help="equation, parameters, singular points and reference of a problem")
    p.add_argument("problem")
    p.set_defaults(func=_cmd_describe)

    p = sub.add_parser("solve", help="solve a problem with a PINN and compare with its reference")
    p.add_argument("problem", nargs="?", default=None, help="registered problem (see: sciml list)")
    p.add_argument("--spec", type=Path, default=None, help="solve the ODE of a spec file instead (docs/spec.md)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="set a parameter (repeatable)")
    from sciml.pinn.cli import add_solve_arguments  # argparse only: no deepxde import

    add_solve_arguments(p)
    p.set_defaults(func=_cmd_solve)

    p = sub.add_parser("analyze", help="singular points, exponents and regularity relations of a spec file")
    p.add_argument("spec", type=Path, help="spec file (YAML, see docs/spec.md)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="set a parameter (repeatable)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_analyze)

    groups = {}
    for name, text in COMMAND_GROUPS.items():
        gp = sub.add_parser(name, help=text)
        groups[name] = gp.add_subparsers(dest=f"{name}_command", metavar="SUBCOMMAND", parser_class=_Parser)
        gp.set_defaults(func=_group_help(gp, name))
    for ep in sorted(entry_points(group="sciml.commands"), key=lambda e: e.name):
        group = ep.name.split(".")[0]
        if group not in groups:
            raise SciMLError(f"entry point {ep.name!r} ({ep.value}) names unknown command group {group!r}")
        ep.load()(groups[group])
    return parser


def _group_help(gp: argparse.ArgumentParser, name: str):
    def show(args: argparse.Namespace) -> int:
        gp.print_help()
        return 2

    return show


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sciml`` script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        setup_logging(-1 if args.quiet else args.verbose)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        return int(args.func(args) or 0)
    except UsageError as exc:
        if debug:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except SciMLError as exc:
        if debug:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # anything unexpected is still one line unless --debug
        if debug:
            traceback.print_exc()
        mapped = explain(exc)  # a library's error on bad input (sciml.errors: the one table of them)
        if mapped is not None:
            print(f"error: {mapped}", file=sys.stderr)
            return EXIT_USAGE
        first = (str(exc).strip().splitlines() or [""])[0]
        print(f"error: {type(exc).__name__}: {first} (rerun with --debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
