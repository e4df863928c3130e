"""Loading one rank's training sample at 0.25°: ForecastDataset and its DataLoader against a raw zarr read.

    python bench/loader.py                  # 721x1440 x 72 channels, 4 steps (1.2 GB, temp dir); results/loader.json
    python bench/loader.py --size small     # 181x360 x 16 channels: seconds (runs/bench/loader_small.json)

Generates a canonical store with the project's writer (random fields quantised to 16 bits, as ERA5's GRIB packing
leaves them, so zstd has something to do) and statistics beside it, then reads one sample (input + target: 2
time steps x all channels, 598 MB at full size) by

* ``zarr, per channel``: the same chunks with zarr, one channel after the other (the raw decode);
* ``zarr, concurrent``: the same, channels read at once from as many threads as the dataset uses;
* ``old dataset path``: what ``ForecastDataset`` did before (per-channel reads, stack, NaN scan, ``(x - mean) / std``
  into new tensors);
* ``ForecastDataset``: ``ds[i]`` (channels read concurrently, normalised in place, time features, static fields);
* ``DataLoader, N workers``: the trainer's loader (:func:`sciml.forecasting.data.loader.batch_loader` with the
  trainer's ``collate``), batch 1.

*Cold*: the store's files are dropped from the page cache (``posix_fadvise DONTNEED``) and the handles opened
anew before each sample; *warm*: the files are cached. CPU seconds count every thread and worker process of the
read (``getrusage``), so ``1 / CPU s`` is the samples/s one loader core sustains and ``CPU s x 1 sample/s`` the
cores that keep a GPU doing one 0.25° FCN3 step per second busy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

SIZES = {"full": (721, 1440, 72), "small": (181, 360, 16)}
GPU_SAMPLES_PER_S = 1.0  # a 0.25° FCN3 step on one GPU takes about one second


def make_store(root: Path, nlat: int, nlon: int, channels: int, steps: int) -> Path:
    """A canonical store of random fields written by :func:`~sciml.forecasting.data.write_store`, one step per
    block (the source is a zero-memory broadcast; the writer's ``transform`` fills each block), and statistics."""
    import numpy as np
    import pandas as pd
    import xarray as xr

    from sciml.forecasting.data import NormStats, source_from_dataset, stats_path, write_store
    from sciml.forecasting.data.grid import Grid

    g = Grid("equiangular", nlat, nlon)
    times = pd.date_range("2020-01-01", periods=steps, freq="6h")
    names = [f"c{i:02d}" for i in range(channels)]
    zero = np.broadcast_to(np.float32(0), (steps, nlat, nlon))
    coords = {"time": times, "lat": g.lat, "lon": g.lon}
    lazy = xr.Dataset({n: (("time", "lat", "lon"), zero) for n in names}, coords=coords)

    def fill(block: xr.Dataset) -> xr.Dataset:
        i = int(np.searchsorted(times.values, block["time"].values[0]))
        rng = np.random.default_rng(i)
        out = block.copy()
        for n in names:
            x = rng.standard_normal((block.sizes["time"], nlat, nlon), dtype=np.float32)
            out[n] = (("time", "lat", "lon"), (np.round(x * 4096) / 4096).astype(np.float32))  # 16-bit packing
        return out

    path = write_store(source_from_dataset(lazy), root / "era5.zarr", time_block=1, transform=fill)
    c = len(names)
    NormStats(
        tuple(names),
        mean=np.linspace(-0.1, 0.1, c),
        std=np.linspace(0.9, 1.1, c),
        diff_mean=np.zeros(c),
        diff_std=np.ones(c),
        min=np.full(c, -6.0),
        max=np.full(c, 6.0),
        clim=np.zeros((1, c, 1, 1)),
        harmonics=0,
        diurnal=False,
    ).save(stats_path(path))
    return path


def evict(path: Path) -> None:
    """Drop the store's files from the page cache (clean pages; no privileges needed)."""
    for f in path.rglob("*"):
        if f.is_file():
            fd = os.open(f, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def cpu_s() -> float:
    """CPU seconds of this process (all threads) and of its finished child processes (loader workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def timed(fn: Callable[[], int]) -> tuple[float, float, int]:
    """``(wall s, CPU s, samples)`` of ``fn()``, which returns how many samples it read."""
    c0, t0 = cpu_s(), time.perf_counter()
    n = fn()
    return time.perf_counter() - t0, cpu_s() - c0, n


# ------------------------------------------------------------------------------------------------- readers
def zarr_reader(path: Path, threads: int) -> Callable[[list[int]], None]:
    """Read time steps ``idx`` of every channel with zarr alone (fresh handles), ``threads`` channels at once."""
    import zarr

    group = zarr.open_group(str(path), mode="r")
    arrays = [group[n] for n in sorted(k for k in group.array_keys() if k.startswith("c"))]

    def one(a, idx):
        return a[idx[0] : idx[-1] + 1]  # the window's consecutive steps: basic selection, zarr's cheapest

    def read(idx: list[int]) -> None:
        if threads == 1:
            for a in arrays:
                one(a, idx)
        else:
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(lambda a: one(a, idx), arrays))

    return read


def old_reader(path: Path) -> Callable[[list[int]], None]:
    """The dataset's former read: per-channel zarr reads, ``np.stack``, a NaN scan, ``(x - mean) / std``."""
    import numpy as np
    import torch
    import zarr

    from sciml.forecasting.data import NormStats, stats_path

    group = zarr.open_group(str(path), mode="r")
    names = sorted(k for k in group.array_keys() if k.startswith("c"))
    arrays = [group[n] for n in names]
    norm = NormStats.load(stats_path(path)).tensors(names)

    def read(idx: list[int]) -> None:
        sel = (np.asarray(idx), slice(None), slice(None))
        out = np.stack([a.get_orthogonal_selection(sel) for a in arrays], axis=1)
        if not np.isfinite(out).all():
            raise ValueError("NaN")
        x = torch.from_numpy(out.astype(np.float32, copy=False))
        x = (x - norm["mean"]) / norm["std"]
        _ = (x[0], x[1:])

    return read


def dataset(path: Path):
    from sciml.forecasting.data import DataConfig, ForecastDataset

    return ForecastDataset(DataConfig(store=path, static=()), 1)


def loader_run(ds, workers: int, prefetch: int, batches: int) -> int:
    """Read ``batches`` batches of one sample (cycling over the samples) with the trainer's loader."""
    from sciml.forecasting.data.loader import batch_loader
    from sciml.forecasting.train.data import collate

    n = len(ds)
    got = 0
    for b in batch_loader(ds, lambda s: [s % n], collate, 0, batches, workers=workers, prefetch=prefetch):
        got += b["input"].shape[0]
        del b
    return got


# ------------------------------------------------------------------------------------------------ measuring
def per_sample(make: Callable[[], Callable[[list[int]], None]], windows: list[list[int]], path: Path, repeat: int):
    """Cold (evicted, fresh handles, every sample once) and warm (``repeat`` passes) timings of a reader."""

    def cold() -> tuple[float, float, int]:
        wall = cpu = 0.0
        for w in windows:
            read = make()  # fresh handles
            evict(path)
            dw, dc, _ = timed(lambda read=read, w=w: read(w) or 1)
            wall, cpu = wall + dw, cpu + dc
        return wall, cpu, len(windows)

    read = make()
    for w in windows:  # warm the page cache and the handles
        read(w)

    def warm() -> int:
        for _ in range(repeat):
            for w in windows:
                read(w)
        return repeat * len(windows)

    return cold(), timed(warm)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", choices=sorted(SIZES), default="full")
    ap.add_argument("--steps", type=int, default=4, help="time steps in the generated store (steps - 1 samples)")
    ap.add_argument("--repeat", type=int, default=3, help="warm passes over the samples")
    ap.add_argument("--prefetch", type=int, default=2, help="batches in flight per loader worker")
    ap.add_argument("--workers", default="0,1,2", help="DataLoader worker counts")
    ap.add_argument("--json", type=Path, default=None, help="default bench/results/loader.json (full size)")
    args = ap.parse_args(argv)
    nlat, nlon, channels = SIZES[args.size]
    small = Path("runs/bench/loader_small.json")
    out_json = args.json or (Path("bench/results/loader.json") if args.size == "full" else small)
    work = Path(tempfile.mkdtemp(prefix="loader-bench-"))
    rows = []
    try:
        t0 = time.perf_counter()
        path = make_store(work, nlat, nlon, channels, args.steps)
        write_s = time.perf_counter() - t0
        store_gb = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e9
        raw_gb = 4 * nlat * nlon * channels * args.steps / 1e9
        windows = [[i, i + 1] for i in range(args.steps - 1)]
        sample_mb = 2 * 4 * nlat * nlon * channels / 1e6

        def record(method: str, cold: tuple | None, warm: tuple) -> None:
            w_wall, w_cpu, w_n = warm
            row = {
                "method": method,
                "warm_samples_s": w_n / w_wall,
                "warm_mb_s": sample_mb * w_n / w_wall,
                "cpu_s_per_sample": w_cpu / w_n,
            }
            if cold is not None:
                row.update(cold_samples_s=cold[2] / cold[0], cold_mb_s=sample_mb * cold[2] / cold[0])
            rows.append(row)
            print(f"  {method}: {row}", file=sys.stderr)

        record("zarr, per channel", *per_sample(lambda: zarr_reader(path, 1), windows, path, args.repeat))
        threads = dataset(path).threads  # as many as the dataset uses
        record("zarr, concurrent", *per_sample(lambda: zarr_reader(path, threads), windows, path, args.repeat))
        record("old dataset path", *per_sample(lambda: old_reader(path), windows, path, args.repeat))

        def ds_reader():
            ds = dataset(path)
            return lambda w: ds[w[0]]

        record("ForecastDataset", *per_sample(ds_reader, windows, path, args.repeat))
        n = len(windows)
        for workers in (int(w) for w in args.workers.split(",")):
            ds = dataset(path)
            evict(path)
            cold = timed(lambda workers=workers, ds=ds: loader_run(ds, workers, args.prefetch, n))
            warm = timed(lambda workers=workers, ds=ds: loader_run(ds, workers, args.prefetch, args.repeat * n))
            record(f"DataLoader, {workers} worker{'s' if workers != 1 else ''}", cold, warm)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    by = {r["method"]: r for r in rows}
    raw = by["zarr, per channel"]["cpu_s_per_sample"]
    for r in rows:
        r["samples_s_per_core"] = 1.0 / r["cpu_s_per_sample"]
        r["cpu_vs_raw_zarr"] = r["cpu_s_per_sample"] / raw
    new = by["ForecastDataset"]
    result = {
        "grid": f"{nlat}x{nlon}",
        "channels": channels,
        "steps": args.steps,
        "sample_mb": round(sample_mb, 1),
        "store_gb": round(store_gb, 3),
        "compression": round(raw_gb / store_gb, 2),
        "write_s": round(write_s, 1),
        "prefetch": args.prefetch,
        "repeat": args.repeat,
        "gpu_samples_s": GPU_SAMPLES_PER_S,
        "cores_per_gpu": round(new["cpu_s_per_sample"] * GPU_SAMPLES_PER_S, 2),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9, 2),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "rows": [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()} for r in rows],
    }
    head = f"{'method':<22} {'cold/s':>7} {'warm/s':>7} {'warm MB/s':>9} {'CPU s':>6} {'/core/s':>7} {'vs zarr':>7}"
    print(f"{nlat}x{nlon} x {channels} channels, {sample_mb:.0f} MB per sample (input + target), {os.cpu_count()} CPUs")
    print(head)
    for r in result["rows"]:
        cold = f"{r['cold_samples_s']:.3f}" if "cold_samples_s" in r else "-"
        print(
            f"{r['method']:<22} {cold:>7} {r['warm_samples_s']:>7.3f} {r['warm_mb_s']:>9.0f} "
            f"{r['cpu_s_per_sample']:>6.2f} {r['samples_s_per_core']:>7.3f} {r['cpu_vs_raw_zarr']:>7.2f}"
        )
    print(f"cores to feed one GPU at {GPU_SAMPLES_PER_S:g} sample/s: {result['cores_per_gpu']}")
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out_json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
