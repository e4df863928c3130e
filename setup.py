"""Package layout only; all metadata is in pyproject.toml.

`problems/` and `forecasting/` are generic top-level folder names. They are installed under the `sciml`
namespace (`sciml.problems`, `sciml.forecasting`) so they can never shadow, or be shadowed by, another
distribution's package. Sub-packages are discovered here so nobody has to keep a list in sync by hand.
"""

from pathlib import Path

from setuptools import setup

ROOTS = {"sciml": "sciml", "sciml.problems": "problems", "sciml.forecasting": "forecasting"}


def discover() -> tuple[list[str], dict[str, str]]:
    packages, package_dir = [], {}
    for name, folder in ROOTS.items():
        package_dir[name] = folder
        for init in sorted(Path(folder).rglob("__init__.py")):
            rel = init.parent.relative_to(folder).parts
            if any(p.startswith((".", "_")) for p in rel):
                continue
            packages.append(".".join((name, *rel)))
    return packages, package_dir


packages, package_dir = discover()
setup(packages=packages, package_dir=package_dir)
