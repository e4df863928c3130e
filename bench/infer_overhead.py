"""Inference overhead: the network alone versus ``sciml forecast infer`` end to end, ``demo`` preset, on one device.

    python bench/infer_overhead.py             # 8 members x 1 initial time x 5 days (20 steps) on the CPU
    python bench/infer_overhead.py --quick     # 2 members x 1 day (4 steps): a smoke run
    python bench/infer_overhead.py --device cuda --members 16 --lead 10d

Set-up (not timed): a one-day shallow-water store on the demo grid (64 x 128) and a ``demo``-preset checkpoint in
the training format from a one-step training run (the weights are as good as random: speed does not depend on
them). Then, all in this process and after one untimed warm-up forecast (so that imports and first-call costs are
not counted):

* ``model only``: ``ensemble_step`` of the loaded network on inputs of the forecast's shapes (state, aux and noise
  fields), ``steps`` times, nothing else (no noise process, normalisation, host copies or writing);
* ``no writing``: :func:`~sciml.forecasting.infer.run_inference` with a writer that drops every lead (load, read,
  noise, denormalisation and the host copy, but no zarr);
* ``end to end``: ``sciml forecast infer`` (the CLI's own entry point, in process) writing the zarr store, with the
  writer thread (``--overlap-writes``, the default) and without it.

Each is timed ``--repeats`` times (the cases take turns) and the median is reported, also as seconds per member
per lead step; the overhead ratio is end to end over model only (target: at most 1.2 with overlapped writing), in
wall and in CPU seconds of the process (on a shared machine the wall time includes waiting for a core; the JSON
has the CPU range over the repeats and the machine's load average). Writes JSON (default
``bench/results/infer_overhead.json``; ``--quick``: ``runs/bench/infer_overhead_quick.json``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

INIT = "2001-01-01T12"


def build_case(work: Path, threads: int) -> tuple[Path, Path]:
    """A one-day store on the demo grid and a ``demo``-preset checkpoint trained for one step on it."""
    from sciml.forecasting.data import PRESETS, compute_stats, simulate, source_from_dataset, stats_path, write_store
    from sciml.forecasting.train import Trainer, load_train_config

    store = work / "swe.zarr"
    ds, _ = simulate(dataclasses.replace(PRESETS["default"], days=1.0, spinup_days=0.5, trajectories=1, groups=1))
    src = source_from_dataset(ds, path=store)
    write_store(src, store)
    compute_stats(src).save(stats_path(store))
    overrides = {
        "data.store": str(store),
        "data.train_end": None,
        "data.valid_start": None,
        "runtime.threads": threads,
        "validation.every": 10_000,
        "stages": [{"name": "one", "steps": 1, "rollout": 1, "members": 2}],
    }
    Trainer(load_train_config("demo", overrides), work / "run").run()
    return store, work / "run" / "checkpoint.pt"


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(cases: dict[str, Callable[[], None]], repeats: int, device) -> dict[str, dict[str, float]]:
    """Median wall and process-CPU seconds of each case over ``repeats`` rounds (cases interleaved in every round,
    so that a change in the machine's load hits all of them alike)."""
    wall: dict[str, list[float]] = {name: [] for name in cases}
    cpu: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            _sync(device)
            w, c = time.perf_counter(), time.process_time()
            with contextlib.redirect_stdout(io.StringIO()):  # the CLI's summary line
                fn()
            _sync(device)
            wall[name].append(time.perf_counter() - w)
            cpu[name].append(time.process_time() - c)
    return {
        n: {
            "wall_s": statistics.median(wall[n]),
            "cpu_s": statistics.median(cpu[n]),
            "cpu_s_range": [min(cpu[n]), max(cpu[n])],
        }
        for n in cases
    }


def model_only(ckpt: Path, members: int, steps: int, device, precision: str) -> Callable[[], None]:
    """The network alone: ``steps`` ensemble steps on inputs of the forecast's shapes."""
    import torch

    from sciml.forecasting.infer import LoadedModel
    from sciml.forecasting.models import ensemble_step
    from sciml.forecasting.runtime import Runtime

    lm = LoadedModel(ckpt)
    mc, model = lm.model_config, lm.model.to(device)
    rt = Runtime(device, precision)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(members, 1, mc.n_channels, mc.nlat, mc.nlon, generator=g).to(device)
    aux = torch.randn(1, mc.n_aux, mc.nlat, mc.nlon, generator=g).to(device)
    z = torch.randn(members, 1, mc.n_noise, mc.nlat, mc.nlon, generator=g).to(device)
    two_step = mc.input_steps == 2  # a two-step model also takes each member's previous state

    @torch.no_grad()
    def run() -> None:
        state, prev = x0, (x0 if two_step else None)
        for _ in range(steps):
            with rt.autocast():
                state, prev = ensemble_step(model, state, aux, z, prev).float(), (state if two_step else None)

    return run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 members x 1 day, 1 repeat: a smoke run")
    ap.add_argument("--members", type=int, default=None, help="ensemble size (default 8; --quick 2)")
    ap.add_argument("--lead", default=None, help="forecast length (default 5d; --quick 1d)")
    ap.add_argument("--repeats", type=int, default=None, help="timed runs per case, median reported (default 3)")
    ap.add_argument("--device", default="cpu", help="cpu (default), cuda, auto")
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    members = args.members or (2 if args.quick else 8)
    lead = args.lead or ("1d" if args.quick else "5d")
    repeats = args.repeats or (1 if args.quick else 3)
    default_json = "runs/bench/infer_overhead_quick.json" if args.quick else "bench/results/infer_overhead.json"
    out_json = args.json or Path(default_json)

    import torch

    from sciml.cli import main as sciml_main
    from sciml.forecasting.infer import InferConfig, LoadedModel, lead_steps, run_inference
    from sciml.forecasting.runtime import resolve_device
    from sciml.io import atomic_write_json

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    work = Path(tempfile.mkdtemp(prefix="infer-overhead-"))
    try:
        t0 = time.perf_counter()
        store, ckpt = build_case(work, args.threads)
        setup_s = time.perf_counter() - t0
        steps = lead_steps(LoadedModel(ckpt), lead)
        flags = ["--device", str(device), "--precision", args.precision]
        argv_base = ["--quiet", "forecast", "infer", "--checkpoint", str(ckpt), "--init", INIT, "--lead", lead]
        argv_base += ["--members", str(members), "--data", str(store), "--overwrite", *flags]

        def cli(overlap: bool) -> Callable[[], None]:
            argv = [
                *argv_base,
                "--out",
                str(work / "fc.zarr"),
                "--overlap-writes" if overlap else "--no-overlap-writes",
            ]
            return lambda: _check(sciml_main(argv))

        class Drop:
            def __init__(self, path, template) -> None:
                pass

            def append(self, lead, fields) -> None:
                pass

            def close(self) -> None:
                pass

        cfg = InferConfig(
            checkpoint=ckpt,
            inits=(INIT,),
            lead=lead,
            members=members,
            out=work / "dropped.zarr",
            overwrite=True,
            store=store,
            device=str(device),
            precision=args.precision,
        )
        cases = {
            "model only": model_only(ckpt, members, steps, device, args.precision),
            "no writing": lambda: run_inference(cfg, writer_cls=Drop),
            "end to end, sequential writes": cli(False),
            "end to end, overlapped writes": cli(True),
        }
        with contextlib.redirect_stdout(io.StringIO()):
            cli(True)()  # warm-up: imports, first calls, page cache
        load = [os.getloadavg()[0]]
        times = timed(cases, repeats, device)
        load.append(os.getloadavg()[0])
        per = members * steps
        rows = [{"case": n, **t, "wall_s_per_member_step": t["wall_s"] / per} for n, t in times.items()]
        store_mb = sum(f.stat().st_size for f in (work / "fc.zarr").rglob("*") if f.is_file()) / 1e6
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for r in rows:
        r["ratio_to_model"] = r["wall_s"] / rows[0]["wall_s"]
        r["cpu_ratio_to_model"] = r["cpu_s"] / rows[0]["cpu_s"]
    result = {
        "settings": {
            "preset": "demo",
            "grid": "64x128",
            "members": members,
            "inits": 1,
            "lead": lead,
            "steps": steps,
            "repeats": repeats,
            "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
            "precision": args.precision,
            "threads": args.threads,
            "quick": args.quick,
            "store_mb": round(store_mb, 2),
            "setup_s": round(setup_s, 1),
            "load_average": [round(x, 2) for x in load],  # 1-minute load of the machine before and after timing
            "platform": platform.platform(),
            "torch": torch.__version__,
        },
        "rows": rows,
    }
    print(f"demo preset, {members} members x 1 init x {steps} steps ({lead}) on {device}, {args.precision}")
    print(f"{'case':<32} {'wall s':>8} {'CPU s':>8} {'ms/member/step':>15} {'x model':>8} {'CPU x model':>12}")
    for r in rows:
        print(
            f"{r['case']:<32} {r['wall_s']:>8.2f} {r['cpu_s']:>8.2f} {1e3 * r['wall_s_per_member_step']:>15.1f} "
            f"{r['ratio_to_model']:>8.2f} {r['cpu_ratio_to_model']:>12.2f}"
        )
    atomic_write_json(out_json, result)
    print(f"wrote {out_json}")
    return 0


def _check(code: int) -> None:
    if code != 0:
        raise SystemExit(f"sciml forecast infer exited with {code}")


if __name__ == "__main__":
    sys.exit(main())
