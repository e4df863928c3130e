"""Packaging: a non-editable install imports *our* problems/forecasting under the sciml namespace, and
environment.yml installs exactly what pyproject.toml declares."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _source_copy(dest: Path) -> Path:
    """Copy the files git would ship (tracked + untracked-not-ignored) so the build leaves no
    ``build/`` or ``*.egg-info`` in the working tree (a stale egg-info there hides new entry points)."""
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


@pytest.mark.slow
def test_non_editable_install_imports_ours(tmp_path):
    target = tmp_path / "site"
    src = _source_copy(tmp_path / "src")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(target),
         str(src)],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-2000:]
    assert not (target / "problems").exists() and not (target / "forecasting").exists()
    # A foreign top-level `problems` package on the path must not be what sciml.problems resolves to.
    decoy = tmp_path / "decoy"
    (decoy / "problems").mkdir(parents=True)
    (decoy / "problems" / "__init__.py").write_text("DECOY = True\n")
    code = (
        "import sciml, sciml.problems, sciml.forecasting, sciml.pinn, problems;"
        "print(sciml.__file__); print(sciml.problems.__file__); print(sciml.forecasting.__file__);"
        "print(hasattr(problems, 'DECOY'))"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(target), str(decoy)]))
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = run.stdout.split()
    for path in lines[:3]:
        assert path.startswith(str(target)), lines
    assert lines[3] == "True"
    # Every source sub-package made it into the wheel.
    for folder, pkg in [("sciml", "sciml"), ("problems", "sciml/problems"), ("forecasting", "sciml/forecasting")]:
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.relative_to(ROOT / folder)
            assert (target / pkg / rel).is_file(), f"{folder}/{rel} missing from the installed package"


def _name(req: str) -> str:
    for sep in "<>=!~[; ":
        req = req.split(sep)[0]
    return req.strip().lower()


def test_environment_yml_matches_pyproject():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    pip_reqs = [r for r in pip_section if not r.startswith("-e")]
    norm = lambda rs: sorted(r.replace(" ", "").lower() for r in rs)  # noqa: E731
    assert norm(pip_reqs) == norm(deps), "environment.yml pip section differs from pyproject dependencies"
    assert "-e ." in pip_section
    assert {_name(r) for r in deps} >= {"torch", "torch-harmonics", "deepxde", "xarray", "zarr", "h5netcdf", "h5py"}


def test_torch_pins_are_the_documented_pair():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert "torch>=2.14,<2.15" in deps and "torch-harmonics==0.9.3" in deps
