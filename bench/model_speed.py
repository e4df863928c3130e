"""Forward+backward time and peak memory per sample of the FCN3-style model presets.

    .venv/bin/python bench/model_speed.py                               # tiny + demo on CPU, fp32
    .venv/bin/python bench/model_speed.py --presets fcn3 --device cuda --dtype bf16 --batch 1

Prints a table and writes JSON (default ``bench/results/model_speed_<device>_<dtype>.json``). Time is the median
over ``--repeats`` timed steps after ``--warmup`` untimed ones, divided by the batch size. Memory: on CUDA the
peak of ``torch.cuda.max_memory_allocated`` during the timed steps; on CPU the process's peak resident set size
(``ru_maxrss``, includes the model build and the Python runtime), since torch has no CPU allocator statistics.
"""

from __future__ import annotations

import argparse
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

from sciml.errors import UsageError
from sciml.forecasting.models import FCN3, count_parameters, preset
from sciml.io import atomic_write_json

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_preset(name: str, device: torch.device, dtype: str, batch: int, warmup: int, repeats: int) -> dict:
    cfg = preset(name)
    t0 = time.perf_counter()
    torch.manual_seed(0)
    model = FCN3(cfg).to(device)
    build_s = time.perf_counter() - t0
    g = torch.Generator(device="cpu").manual_seed(0)

    def rnd(c: int) -> torch.Tensor:
        return torch.randn(batch, c, cfg.nlat, cfg.nlon, generator=g).to(device)

    x, aux, z = rnd(cfg.n_channels), rnd(cfg.n_aux), rnd(cfg.n_noise)
    autocast = torch.autocast(device_type=device.type, dtype=DTYPES[dtype], enabled=dtype != "fp32")

    def step() -> None:
        model.zero_grad(set_to_none=True)
        with autocast:
            y = model(x, aux, z)
        y.float().square().mean().backward()

    for _ in range(warmup):
        step()
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(repeats):
        _sync(device)
        t = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - t)
    if device.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated(device) / 2**20
        mem_kind = "cuda_max_allocated"
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        mem_kind = "process_peak_rss"
    return {
        "preset": name,
        "grid": f"{cfg.nlat}x{cfg.nlon}",
        "internal": "x".join(map(str, cfg.internal_shape)),
        "parameters": count_parameters(model),
        "batch": batch,
        "build_s": build_s,
        "fwd_bwd_s_per_sample": statistics.median(times) / batch,
        "fwd_bwd_s_all": times,
        "peak_memory_mb": peak_mb,
        "memory_kind": mem_kind,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", default="tiny,demo", help="comma-separated: tiny, demo, fcn3")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="fp32", help="bf16 runs the network under autocast")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (CPU)")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    try:
        device = torch.device(args.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise UsageError("--device cuda requested but CUDA is not available")
        if args.batch < 1 or args.repeats < 1 or args.warmup < 0:
            raise UsageError("--batch and --repeats must be >= 1, --warmup >= 0")
        names = [n.strip() for n in args.presets.split(",") if n.strip()]
        for n in names:
            preset(n)
        if "fcn3" in names and device.type == "cpu":
            raise UsageError("fcn3 (721x1440, 711M parameters) is a GPU benchmark; use --device cuda")
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    rows = [bench_preset(n, device, args.dtype, args.batch, args.warmup, args.repeats) for n in names]
    header = f"{'preset':8} {'grid':>10} {'internal':>9} {'params':>13} {'build s':>8} {'s/sample':>9} {'peak MB':>9}"
    print(f"FCN3-style model, fwd+bwd, device={device}, dtype={args.dtype}, batch={args.batch}, threads={args.threads}")
    print(header)
    for r in rows:
        print(
            f"{r['preset']:8} {r['grid']:>10} {r['internal']:>9} {r['parameters']:>13,} {r['build_s']:>8.2f} "
            f"{r['fwd_bwd_s_per_sample']:>9.4f} {r['peak_memory_mb']:>9.0f}"
        )
    out = args.out or Path("bench/results") / f"model_speed_{device.type}_{args.dtype}.json"
    meta = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
        "dtype": args.dtype,
        "threads": args.threads,
        "torch": torch.__version__,
    }
    atomic_write_json(out, {"meta": meta, "results": rows})
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
