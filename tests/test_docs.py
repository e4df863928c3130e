"""Every code block in README.md and docs/ runs (or, for shell commands, parses) here, so the docs cannot drift.

Fenced blocks by their info string:

* ``python`` — the file's python blocks run in order, as one script, in a fresh interpreter in a temporary
  folder; ``python ranks=N`` blocks run as one script on N local gloo ranks (as under torchrun).
* ``console`` (lines starting with ``$``) and ``bash`` — each command is checked without running it: ``sciml ...``
  (also ``torchrun ... -m sciml.cli ...``) must parse with the real command line, ``make TARGET`` must name a
  Makefile target, ``python PATH ...`` must name a file of the repository whose source knows every ``--flag``.
  Other programs (pip, conda, squeue, ...) are not ours to check.
* ``yaml`` and ``toml`` — must parse.
* ``text`` — output or synopsis shown to the reader; not checked.

An untagged block is an error: say what it is.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```\s*$", re.M | re.S)
KNOWN = {"python", "console", "bash", "yaml", "toml", "text"}


def blocks(path: Path) -> list[tuple[str, dict[str, str], str, int]]:
    """``(language, options, code, line)`` of every fenced block of ``path``."""
    text = path.read_text()
    out = []
    for m in FENCE.finditer(text):
        info = m.group(1).split()
        lang = info[0] if info else ""
        opts = dict(o.split("=", 1) for o in info[1:] if "=" in o)
        out.append((lang, opts, m.group(2), text.count("\n", 0, m.start()) + 1))
    return out


def shell_commands(lang: str, code: str) -> list[str]:
    """Command lines of a console/bash block: ``$`` prompts (console) or every line (bash); comments and
    continuation lines joined and stripped."""
    joined = code.replace("\\\n", " ")
    cmds = []
    for line in joined.splitlines():
        line = line.strip()
        if lang == "console":
            if not line.startswith("$ "):
                continue
            line = line[2:]
        if not line or line.startswith("#"):
            continue
        for part in re.split(r"\s+(?:&&|;)\s+", line):
            cmds.append(shlex.split(part, comments=True))
    return [c for c in cmds if c]


def _ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(ROOT)) for p in paths]


@pytest.mark.parametrize("path", DOCS, ids=_ids(DOCS))
def test_every_block_is_tagged(path: Path) -> None:
    bad = [line for lang, _, _, line in blocks(path) if lang not in KNOWN]
    assert not bad, f"{path.name}: untagged or unknown code blocks at lines {bad} (use one of {sorted(KNOWN)})"


def _check_command(argv: list[str], parser, makefile: str) -> str | None:
    """None when ``argv`` is a valid command of ours (or not ours to check), else the reason."""
    prog = Path(argv[0]).name
    if prog == "torchrun" and "sciml.cli" in argv:
        argv = ["sciml", *argv[argv.index("sciml.cli") + 1 :]]
        prog = "sciml"
    if prog == "sciml":
        try:
            parser.parse_args(argv[1:])
        except SystemExit as exc:  # --help / --version
            return None if exc.code == 0 else f"exit {exc.code}"
        except Exception as exc:  # noqa: BLE001 - the message is the test's output
            return str(exc)
        return None
    if prog == "make":
        missing = [t for t in argv[1:] if "=" not in t and not re.search(rf"^{re.escape(t)}:", makefile, re.M)]
        return f"no Makefile target {missing}" if missing else None
    if prog in ("python", "python3") and len(argv) > 1 and not argv[1].startswith("-"):
        script = ROOT / argv[1]
        if not script.is_file():
            return f"no file {argv[1]}"
        source = script.read_text()
        unknown = [a.split("=")[0] for a in argv[2:] if a.startswith("--") and a.split("=")[0] not in source]
        return f"{argv[1]} has no option {unknown}" if unknown else None
    return None


@pytest.mark.parametrize("path", DOCS, ids=_ids(DOCS))
def test_shell_commands_parse(path: Path) -> None:
    from sciml.cli import build_parser

    parser = build_parser()
    makefile = (ROOT / "Makefile").read_text()
    failures = []
    for lang, _, code, line in blocks(path):
        if lang not in ("console", "bash"):
            continue
        for argv in shell_commands(lang, code):
            reason = _check_command(argv, parser, makefile)
            if reason:
                failures.append(f"{path.name}:{line}: {shlex.join(argv)}: {reason}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("path", DOCS, ids=_ids(DOCS))
def test_config_blocks_parse(path: Path) -> None:
    for lang, _, code, line in blocks(path):
        try:
            if lang == "yaml":
                yaml.safe_load(code)
            elif lang == "toml":
                tomllib.loads(code)
        except Exception as exc:  # noqa: BLE001
            pytest.fail(f"{path.name}:{line}: {lang} block does not parse: {exc}")


_RANKS_DRIVER = """
import runpy, sys
from sciml.forecasting.distributed.spawn import run_local
result = run_local(runpy.run_path, int(sys.argv[2]), args=(sys.argv[1],), timeout_s=240)
sys.exit(0 if result.ok else 1)
"""

PY_DOCS = [p for p in DOCS if any(lang == "python" for lang, *_ in blocks(p))]


@pytest.mark.parametrize("path", PY_DOCS, ids=_ids(PY_DOCS))
def test_python_blocks_run(path: Path, tmp_path: Path) -> None:
    groups: dict[int, list[str]] = {}
    for lang, opts, code, line in blocks(path):
        if lang == "python":
            groups.setdefault(int(opts.get("ranks", 1)), []).append(f"# {path.name}:{line}\n{code}")
    for ranks, codes in sorted(groups.items()):
        script = tmp_path / f"blocks_{ranks}.py"
        script.write_text("\n".join(codes))
        cmd = [sys.executable, str(script)]
        if ranks > 1:
            cmd = [sys.executable, "-c", _RANKS_DRIVER, str(script), str(ranks)]
        proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"{path.name} python blocks (ranks={ranks}) failed:\n{proc.stderr[-3000:]}"


def test_generated_tables_are_current() -> None:
    """docs/benchmarks.md and the README's results block are what bench/tables.py makes of bench/results/."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "tables.py"), "--check"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr


def test_forecasting_package_quick_start_runs() -> None:
    """The quick start in ``sciml.forecasting``'s docstring is a doctest."""
    import doctest

    import sciml.forecasting

    result = doctest.testmod(sciml.forecasting, raise_on_error=False)
    assert result.attempted >= 10 and result.failed == 0
