"""Strong and weak scaling of the spatially distributed FCN3 training step (1, 2, 4 processes).

    python bench/distributed_scaling.py                        # CPU/gloo, local processes, tiny widths
    python bench/distributed_scaling.py --procs 1 2 4 8 --strong 181x360 --json bench/distributed_scaling.json
    torchrun --nproc_per_node 4 bench/distributed_scaling.py --worker --nlat 361 --nlon 720   # GPUs, NCCL

Each case runs one training step (forward of a 2-member ensemble, ensemble CRPS, backward, gradient sync, Adam)
``--warmup`` times untimed, then ``--steps`` times timed, on ``h x w`` tiles (1 -> 1x1, 2 -> 2x1, 4 -> 2x2,
8 -> 2x4). *Strong*: the global grid is fixed. *Weak*: the tile is fixed (about ``--weak`` per rank), so the
global grid grows with the process count. Reported per case: step time (slowest rank, median over steps),
communication share (time inside ``torch.distributed`` collectives / step time, slowest rank), peak memory per
rank (CPU: peak resident set growth after start-up; GPU: ``torch.cuda.max_memory_allocated``).

The collectives are timed by wrapping the ``torch.distributed`` functions for the duration of the benchmark
(torch-harmonics calls them through that module); on GPUs each wrapped call synchronises the device, which
makes the measured share an upper bound. On a CPU machine with fewer cores than processes the ranks compete for
cores, and the numbers measure that contention rather than the algorithm. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import resource
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")

LAYOUT = {1: (1, 1), 2: (2, 1), 4: (2, 2), 8: (2, 4), 16: (4, 4)}
COLLECTIVES = (
    "all_to_all",
    "all_reduce",
    "all_gather",
    "all_gather_into_tensor",
    "reduce_scatter",
    "reduce_scatter_tensor",
    "broadcast",
    "scatter",
    "gather",
    "send",
    "recv",
    "barrier",
)


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


class CommTimer:
    """Accumulates wall time spent inside ``torch.distributed`` collectives while installed."""

    def __init__(self, cuda: bool) -> None:
        self.cuda, self.seconds, self.calls, self._orig = cuda, 0.0, 0, {}

    def install(self) -> None:
        import torch
        import torch.distributed as dist

        def wrap(fn):
            @functools.wraps(fn)
            def timed(*args, **kwargs):
                if self.cuda:
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                out = fn(*args, **kwargs)
                if self.cuda:
                    torch.cuda.synchronize()
                self.seconds += time.perf_counter() - t0
                self.calls += 1
                return out

            return timed

        for name in COLLECTIVES:
            if hasattr(dist, name):
                self._orig[name] = getattr(dist, name)
                setattr(dist, name, wrap(self._orig[name]))

    def uninstall(self) -> None:
        import torch.distributed as dist

        for name, fn in self._orig.items():
            setattr(dist, name, fn)
        self._orig = {}


def worker(nlat: int, nlon: int, steps: int, warmup: int, out: str | None, mode: str) -> dict | None:
    """One rank of one case (under ``run_local`` or torchrun); rank 0 returns / writes the summary."""
    import torch
    import torch.distributed as dist

    from sciml.forecasting.distributed.comm import local_tile, sync_gradients
    from sciml.forecasting.distributed.context import ParallelConfig, init_parallel
    from sciml.forecasting.distributed.crps import DistributedGridCRPSLoss
    from sciml.forecasting.distributed.ops import DistributedSphereOps
    from sciml.forecasting.losses import FairCRPS, GridCRPSLoss
    from sciml.forecasting.models import FCN3, preset

    rss0 = _rss_mb()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    h, w = LAYOUT[world]
    ctx = init_parallel(ParallelConfig(h=h, w=w, timeout_s=600))
    dev = ctx.device
    cfg = preset("tiny", nlat=nlat, nlon=nlon)
    torch.manual_seed(0)
    model = FCN3(cfg, DistributedSphereOps(ctx)).to(dev)
    loss_fn = DistributedGridCRPSLoss(GridCRPSLoss(nlat, nlon, FairCRPS()), ctx).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    tile = ctx.tile(nlat, nlon)
    g = torch.Generator().manual_seed(1)
    members, batch = 2, 1

    def field(c: int, lead: tuple[int, ...] = (batch,)) -> torch.Tensor:
        return local_tile(torch.randn(*lead, c, nlat, nlon, generator=g), tile).to(dev)

    x, aux, target = field(cfg.n_channels), field(cfg.n_aux), field(cfg.n_channels)
    z = field(cfg.n_noise, (members * batch,))
    xs, auxs = x.repeat(members, 1, 1, 1), aux.repeat(members, 1, 1, 1)
    timer = CommTimer(dev.type == "cuda")

    def step() -> float:
        out = model(xs, auxs, z)
        loss = loss_fn(out.reshape(members, batch, *out.shape[1:]), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        sync_gradients(model.parameters(), ctx)
        opt.step()
        return loss.item()

    for _ in range(warmup):
        step()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times, comm = [], []
    timer.install()
    try:
        for _ in range(steps):
            if dev.type == "cuda":
                torch.cuda.synchronize()
            c0, t0 = timer.seconds, time.perf_counter()
            step()
            if dev.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
            comm.append(timer.seconds - c0)
    finally:
        timer.uninstall()
    mem = torch.cuda.max_memory_allocated() / 1e6 if dev.type == "cuda" else _rss_now_peak_mb() - rss0
    local = torch.tensor([statistics.median(times), statistics.median(comm), mem], dtype=torch.float64, device=dev)
    dist.all_reduce(local, op=dist.ReduceOp.MAX)
    result = None
    if ctx.rank == 0:
        t, c, m = (float(v) for v in local.cpu())
        result = {
            "mode": mode,
            "procs": world,
            "layout": f"{h}x{w}",
            "grid": f"{nlat}x{nlon}",
            "tile": f"{tile.shape[0]}x{tile.shape[1]}",
            "backend": ctx.backend,
            "step_s": t,
            "comm_s": c,
            "comm_share": c / t if t > 0 else float("nan"),
            "mem_MB_per_rank": m,
            "memory_kind": "cuda max allocated" if dev.type == "cuda" else "peak RSS growth",
            "steps": steps,
        }
        if out:
            Path(out).write_text(json.dumps(result))
        else:
            print(json.dumps(result), flush=True)
    ctx.close()
    return result


def _rss_now_peak_mb() -> float:
    # ru_maxrss is in kilobytes on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3


def _grid(s: str) -> tuple[int, int]:
    a, b = s.lower().split("x")
    return int(a), int(b)


def weak_grid(tile: tuple[int, int], procs: int) -> tuple[int, int]:
    """Global grid whose tiles are about ``tile`` on ``procs`` ranks (odd latitude count with both poles)."""
    h, w = LAYOUT[procs]
    nlat = (tile[0] - 1) * h + 1
    nlon = tile[1] * w
    return nlat, nlon


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--procs", type=int, nargs="+", default=[1, 2, 4], choices=sorted(LAYOUT))
    ap.add_argument("--strong", default="65x128", help="global grid for strong scaling (default 65x128)")
    ap.add_argument("--weak", default="33x64", help="tile per rank for weak scaling (default 33x64)")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    ap.add_argument("--worker", action="store_true", help="run as one rank under torchrun (with --nlat/--nlon)")
    ap.add_argument("--nlat", type=int, default=65)
    ap.add_argument("--nlon", type=int, default=128)
    args = ap.parse_args()

    if args.worker:
        worker(args.nlat, args.nlon, args.steps, args.warmup, None, "torchrun")
        return

    from sciml.forecasting.distributed.spawn import run_local

    cases = [("strong", p, _grid(args.strong)) for p in args.procs]
    cases += [("weak", p, weak_grid(_grid(args.weak), p)) for p in args.procs]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for mode, p, (nlat, nlon) in cases:
            out = Path(tmp) / f"{mode}-{p}.json"
            run = run_local(worker, p, args=(nlat, nlon, args.steps, args.warmup, str(out), mode), timeout_s=1800)
            if not run.ok:
                raise SystemExit(f"{mode} scaling on {p} processes failed: {run}")
            rows.append(json.loads(out.read_text()))
    base = {
        m: next(r["step_s"] for r in rows if r["mode"] == m and r["procs"] == min(args.procs))
        for m in ("strong", "weak")
    }
    print(
        f"{'mode':6} {'procs':>5} {'layout':>6} {'grid':>9} {'tile':>7} {'step s':>8} {'speedup':>7} "
        f"{'eff':>5} {'comm %':>6} {'MB/rank':>8}"
    )
    for r in rows:
        ratio = base[r["mode"]] / r["step_s"]
        eff = ratio / r["procs"] if r["mode"] == "strong" else ratio
        r["speedup"] = ratio
        r["efficiency"] = eff
        print(
            f"{r['mode']:6} {r['procs']:5d} {r['layout']:>6} {r['grid']:>9} {r['tile']:>7} {r['step_s']:8.3f} "
            f"{ratio:7.2f} {eff:5.2f} {100 * r['comm_share']:6.1f} {r['mem_MB_per_rank']:8.1f}"
        )
    meta = {
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "omp_threads_per_rank": os.environ.get("OMP_NUM_THREADS"),
        "note": "efficiency: strong = T1/(P*TP), weak = T1/TP; memory: see memory_kind",
    }
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "results": rows}, indent=1))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
