"""Inference samples per network call (``sciml forecast infer --max-batch``): speed and peak memory, ``demo`` model.

    python bench/infer_batch.py                         # 384 samples (the full demo's 48 cases x 8 members)
    python bench/infer_batch.py --quick                 # 16 samples: a smoke run
    python bench/infer_batch.py --device cuda --sizes 8,64,384

One ensemble step of the full demo's network (``demo`` preset with two input states and the degree-1 wind map, as
``configs/forecast/demo.yaml``; random weights: speed does not depend on them) on ``--samples`` samples (member x
initial time), split into calls of at most ``max_batch`` samples (:func:`~sciml.forecasting.models.ensemble_step`).
Each size runs in its own process, so that its peak memory is its own: on the CPU the process's peak resident set
size (``ru_maxrss``, which includes the model and the Python runtime; the ``baseline`` row is a process that only
builds the model and its inputs), on CUDA ``torch.cuda.max_memory_allocated``. Time: the median over
``--repeats`` steps after one untimed warm-up call, in milliseconds per sample. Writes JSON (default
``bench/results/infer_batch.json``; ``--quick``: ``runs/bench/infer_batch_quick.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path


def child(samples: int, max_batch: int, repeats: int, device_name: str, threads: int) -> dict:
    """One size in this process: time and peak memory of ``repeats`` steps (``max_batch`` 0: set-up only)."""
    import torch

    from sciml.forecasting.models import FCN3, ensemble_step, preset
    from sciml.forecasting.runtime import resolve_device

    torch.set_num_threads(threads)
    device = resolve_device(device_name)
    cfg = preset("demo", input_steps=2, degree_one_pairs=((1, 2),))
    torch.manual_seed(0)
    model = FCN3(cfg).to(device).eval()
    g = torch.Generator().manual_seed(0)

    def rnd(c: int) -> torch.Tensor:
        return torch.randn(samples, 1, c, cfg.nlat, cfg.nlon, generator=g).to(device)

    state, noise = rnd(cfg.n_channels), rnd(cfg.n_noise)
    prev, aux = state + 0.1 * rnd(cfg.n_channels), rnd(cfg.n_aux)[0]
    times: list[float] = []
    if max_batch > 0:
        with torch.no_grad():
            warm = min(max_batch, samples)
            ensemble_step(model, state[:warm], aux, noise[:warm], prev[:warm], max_batch=max_batch)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
                torch.cuda.reset_peak_memory_stats(device)
            for _ in range(repeats):
                t = time.perf_counter()
                ensemble_step(model, state, aux, noise, prev, max_batch=max_batch)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                times.append(time.perf_counter() - t)
    if device.type == "cuda":
        peak_mb, kind = torch.cuda.max_memory_allocated(device) / 2**20, "cuda_max_allocated"
    else:
        peak_mb, kind = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process_peak_rss"
    return {
        "max_batch": max_batch,
        "calls": -(-samples // max_batch) if max_batch else 0,
        "ms_per_sample": 1e3 * statistics.median(times) / samples if times else None,
        "step_s": times,
        "peak_memory_mb": round(peak_mb, 1),
        "memory_kind": kind,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="16 samples, sizes 1,4,16, one repeat: a smoke run")
    ap.add_argument("--samples", type=int, default=None, help="samples per step (default 384 = 48 cases x 8)")
    ap.add_argument("--sizes", default=None, help="comma-separated max_batch values (default 1,2,4,8,16,32,all)")
    ap.add_argument("--repeats", type=int, default=None, help="timed steps per size, median reported (default 2)")
    ap.add_argument("--device", default="cpu", help="cpu (default), cuda, auto")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)  # one size, in a subprocess
    args = ap.parse_args(argv)
    samples = args.samples or (16 if args.quick else 384)
    repeats = args.repeats or (1 if args.quick else 2)
    if args.child is not None:
        print(json.dumps(child(samples, args.child, repeats, args.device, args.threads)))
        return 0
    raw = args.sizes or ("1,4,all" if args.quick else "1,2,4,8,16,32,all")
    try:
        sizes = [samples if s.strip() == "all" else int(s) for s in raw.split(",") if s.strip()]
    except ValueError:
        print(f"error: --sizes takes integers or 'all', got {raw!r}", file=sys.stderr)
        return 2
    if samples < 1 or repeats < 1 or not sizes or min(sizes) < 1:
        print("error: --samples, --repeats and every --sizes value must be >= 1", file=sys.stderr)
        return 2
    default_json = "runs/bench/infer_batch_quick.json" if args.quick else "bench/results/infer_batch.json"
    out_json = args.json or Path(default_json)
    base = [sys.executable, __file__, "--samples", str(samples), "--repeats", str(repeats)]
    base += ["--device", args.device, "--threads", str(args.threads)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    load = [os.getloadavg()[0]]
    rows = []
    for size in [0, *sizes]:
        res = subprocess.run([*base, "--child", str(size)], capture_output=True, text=True, env=env)
        if res.returncode != 0:
            print(res.stderr, file=sys.stderr)
            print(f"error: max_batch {size} failed (exit {res.returncode})", file=sys.stderr)
            return 1
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
        r = rows[-1]
        name = "baseline" if size == 0 else str(size)
        ms = "-" if r["ms_per_sample"] is None else f"{r['ms_per_sample']:.1f}"
        print(f"max_batch {name:>8}: {ms:>7} ms/sample, peak {r['peak_memory_mb']:>8.0f} MB", flush=True)
    load.append(os.getloadavg()[0])

    from sciml.io import atomic_write_json

    result = {
        "settings": {
            "preset": "demo (input_steps 2, degree-1 wind map)",
            "grid": "64x128",
            "samples": samples,
            "repeats": repeats,
            "device": args.device,
            "threads": args.threads,
            "quick": args.quick,
            "load_average": [round(x, 2) for x in load],
            "platform": platform.platform(),
            "processor": platform.processor(),
        },
        "rows": rows,
    }
    atomic_write_json(out_json, result)
    print(f"wrote {out_json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
