"""Fixed start-up of the CLI: wall and CPU seconds of commands and imports, each in a fresh Python process.

    python bench/startup.py                       # 5 runs each, rows labelled "current"
    python bench/startup.py --label before        # e.g. on an older commit, to compare (rows merge by label)
    python bench/startup.py --quick               # 1 run each, JSON under runs/bench/

Every case runs ``--runs`` times in a new process (cases take turns, so that a change in the machine's load hits
them alike); the table shows the median wall seconds and the median CPU seconds (user + system of the child, from
``getrusage``; on a shared machine wall includes waiting for a core, CPU does not). Cases:

* ``sciml --help``, ``sciml forecast infer --help``: building the parser (no torch);
* ``infer, missing checkpoint``: ``sciml forecast infer`` refused for a checkpoint that does not exist, the fixed
  cost of a command that stops at bad input;
* ``import torch``, ``import torch_harmonics`` (its ``torch.compile``-related decorators import ``torch._dynamo``),
  ``import sciml.forecasting.infer``, and ``forecast imports``: what a forecast run loads before its first step
  (the inference module, the network, the noise and the data reader).

Writes JSON (default ``bench/results/startup.json``): the rows of ``--label`` replace that label's earlier rows,
other labels are kept, so a before/after comparison is two runs of this script.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(sys.executable).parent
SCIML = str(HERE / "sciml")
PY = sys.executable


def cases(tmp: Path) -> dict[str, list[str]]:
    missing = ["forecast", "infer", "--checkpoint", str(tmp / "missing.pt"), "--init", "2001-01-01T00"]
    missing += ["--lead", "1d", "--out", str(tmp / "fc.zarr")]
    imports = (
        "import sciml.forecasting.infer, sciml.forecasting.noise, sciml.forecasting.data.dataset;"
        "from sciml.forecasting.models import FCN3"
    )
    return {
        "sciml --help": [SCIML, "--help"],
        "sciml forecast infer --help": [SCIML, "forecast", "infer", "--help"],
        "infer, missing checkpoint": [SCIML, *missing],
        "import torch": [PY, "-c", "import torch"],
        "import torch_harmonics": [PY, "-c", "import torch_harmonics"],
        "import sciml.forecasting.infer": [PY, "-c", "import sciml.forecasting.infer"],
        "forecast imports": [PY, "-c", imports],
    }


def run_once(argv: list[str]) -> tuple[float, float, int]:
    """Wall and CPU (user + system) seconds of one child process, and its exit status."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    code = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, code


def _revision() -> str | None:
    """``git describe --always --dirty`` of the checkout measured (None outside a git checkout)."""
    run = subprocess.run(
        ["git", "describe", "--always", "--dirty"], capture_output=True, text=True, cwd=Path(__file__).parent
    )
    return run.stdout.strip() or None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=None, help="processes per case, median reported (default 5)")
    ap.add_argument("--label", default="current", help="name of this set of rows (e.g. before, after)")
    ap.add_argument("--quick", action="store_true", help="one run per case, JSON under runs/bench/")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    runs = args.runs or (1 if args.quick else 5)
    out = args.json or Path("runs/bench/startup_quick.json" if args.quick else "bench/results/startup.json")

    import json

    from sciml.io import atomic_write_json

    env_threads = os.environ.get("OMP_NUM_THREADS")
    with tempfile.TemporaryDirectory(prefix="startup-") as tmp:
        todo = cases(Path(tmp))
        wall: dict[str, list[float]] = {n: [] for n in todo}
        cpu: dict[str, list[float]] = {n: [] for n in todo}
        codes: dict[str, int] = {}
        load = [os.getloadavg()[0]]
        run_once(todo["import torch"])  # warm the page cache: the first import reads the libraries from disk
        for _ in range(runs):
            for name, cmd in todo.items():
                w, c, codes[name] = run_once(cmd)
                wall[name].append(w)
                cpu[name].append(c)
        load.append(os.getloadavg()[0])
    rows = [
        {
            "label": args.label,
            "case": n,
            "wall_s": round(statistics.median(wall[n]), 3),
            "cpu_s": round(statistics.median(cpu[n]), 3),
            "exit": codes[n],
        }
        for n in todo
    ]
    print(f"{'case':<32} {'wall s':>8} {'CPU s':>8} {'exit':>5}   ({args.label}, median of {runs})")
    for r in rows:
        print(f"{r['case']:<32} {r['wall_s']:>8.2f} {r['cpu_s']:>8.2f} {r['exit']:>5}")
    old = json.loads(out.read_text()) if out.exists() else {"rows": []}
    kept = [r for r in old["rows"] if r["label"] != args.label]
    settings = dict(old.get("settings", {}))
    settings[args.label] = {
        "runs": runs,
        "OMP_NUM_THREADS": env_threads,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average": [round(x, 2) for x in load],  # 1-minute load of the machine before and after
        "revision": _revision(),
    }
    atomic_write_json(out, {"settings": settings, "rows": kept + rows})
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
