"""Build a throw-away installed distribution that registers problems through entry points."""

from __future__ import annotations

import textwrap
from pathlib import Path

PROBLEM_SRC = """
from sciml.problem import Parameter, ProblemSpec


class {cls}(ProblemSpec):
    name = "{name}"
    aliases = {aliases!r}
    summary = "a plug-in test problem"
    equation = "y' = k y"
    parameters = (
        Parameter("k", 1.0, low=0.0, high=10.0, description="rate"),
        Parameter("n", 2, low=0, high=8, integer=True, description="an integer"),
    )
    singular_points = "none"
    reference = "y = exp(k x)"
"""


def make_plugin(root: Path, dist: str, problems: dict[str, tuple[str, ...]]) -> Path:
    """Write module ``{dist}_mod`` and ``{dist}-0.1.dist-info`` under ``root``; return ``root``.

    ``problems`` maps problem name -> aliases. Put ``root`` on ``sys.path`` (or PYTHONPATH) to "install" it.
    """
    mod = f"{dist}_mod"
    lines, eps = [], []
    for i, (name, aliases) in enumerate(problems.items()):
        cls = f"P{i}"
        lines.append(PROBLEM_SRC.format(cls=cls, name=name, aliases=aliases))
        eps.append(f"{name} = {mod}:{cls}")
    (root / f"{mod}.py").write_text("\n".join(lines))
    info = root / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[sciml.problems]\n" + "\n".join(eps) + "\n")
    (info / "RECORD").write_text("")
    return root


__all__ = ["make_plugin", "textwrap"]
