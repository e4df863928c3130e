r"""Smoke test for a SLURM (or torchrun) launch: run it through the sbatch template before a long training job.

    sciml forecast launch --slurm --nodes 2 --gpus-per-node 4 --config my.yaml \
        --command "python scripts/slurm/smoke.py" --submit -- --h-parallel 2 --w-parallel 2 --steps 20

It takes the training command's interface (``--config CFG --out DIR [--resume CKPT] ...``), so it exercises the
path a training job takes: every rank reads its rank and rendezvous with the training code's own parser
(:func:`sciml.forecasting.distributed.env.launch_env`: SLURM or torchrun variables), joins ``torch.distributed``
(NCCL on GPUs, else gloo), logs its coordinates in the process mesh ``batch x ensemble x h x w``
(:class:`~sciml.forecasting.distributed.layout.MeshShape`), creates the mesh groups and checks one all-reduce
over each group ``G`` against :math:`\sum_{r \in G} (r + 1)`, then runs ``--steps`` steps of one world
all-reduce each, checked against the closed form

.. math::

    \sum_{r=0}^{N-1} (r + 1) = \frac{N (N + 1)}{2}.

Rank 0 keeps a checkpoint (step and accumulated sum, :math:`a_s = s\,N(N+1)/2`) in ``OUT/checkpoint.pt``.
On SIGUSR1 (sent by the template before the time limit) all ranks agree on a step, rank 0 writes the checkpoint
and every rank exits 0; ``--resume CKPT`` continues from it and checks :math:`a_s`. Each rank writes
``OUT/ranks/rank-R.run-K.json`` (K = SLURM restart count) and rank 0 ``OUT/result.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import time
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

# env and layout are pure Python (no torch-harmonics import: four ranks start seconds faster)
from sciml.forecasting.distributed.env import launch_env
from sciml.forecasting.distributed.layout import GROUP_ORDER, MeshShape


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", type=Path, help="accepted like the training command; recorded, not read")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--resume", type=Path)
    p.add_argument("--h-parallel", type=int, default=1)
    p.add_argument("--w-parallel", type=int, default=1)
    p.add_argument("--ensemble-parallel", type=int, default=1)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--step-seconds", type=float, default=0.0, help="sleep per step (to have time to signal)")
    p.add_argument("--checkpoint-name", default="checkpoint.pt")
    p.add_argument("--fail-rank", type=int, default=-1, help="this rank raises after init (tests error exits)")
    p.add_argument("--timeout", type=float, default=120.0, help="collective timeout in seconds")
    return p.parse_args(argv)


def save_checkpoint(path: Path, state: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)  # atomic: a kill mid-write leaves the previous checkpoint


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)
    env = launch_env(os.environ)
    rank, world, local = env.rank, env.world_size, env.local_rank
    stop = {"flag": False}
    signal.signal(signal.SIGUSR1, lambda *_: stop.update(flag=True))

    backend = "nccl" if torch.cuda.is_available() else "gloo"
    device = torch.device("cuda", local % torch.cuda.device_count()) if backend == "nccl" else torch.device("cpu")
    if backend == "nccl":
        torch.cuda.set_device(device)
    addr, port = env.master_addr, env.master_port
    timeout = timedelta(seconds=args.timeout)
    dist.init_process_group(backend, init_method=env.init_method, rank=rank, world_size=world, timeout=timeout)
    mesh = MeshShape.from_world(world, h=args.h_parallel, w=args.w_parallel, ensemble=args.ensemble_parallel)
    c = mesh.coords(rank)
    coords = (c.batch, c.ensemble, c.h, c.w)
    host = socket.gethostname()
    print(
        f"rank {rank}/{world} local {local} host {host} backend {backend} master {addr}:{port} "
        f"mesh coords batch={c.batch} ensemble={c.ensemble} h={c.h} w={c.w}",
        flush=True,
    )
    groups = {}
    for name in GROUP_ORDER:  # every rank creates every group in the same order (new_group is collective)
        for members in mesh.group_ranks(name):
            handle = dist.new_group(list(members), timeout=timeout)
            if rank in members:
                x = torch.tensor([rank + 1.0], dtype=torch.float64, device=device)
                dist.all_reduce(x, group=handle)
                if x.item() != sum(r + 1.0 for r in members):
                    raise SystemExit(f"rank {rank}: all-reduce over group {name} {members} gave {x.item()}")
                groups[name] = list(members)
    if rank == args.fail_rank:
        raise RuntimeError(f"rank {rank} fails on purpose (--fail-rank)")

    out = args.out
    (out / "ranks").mkdir(parents=True, exist_ok=True)
    ckpt = out / args.checkpoint_name
    expected = world * (world + 1) / 2
    step, acc, resumed = 0, 0.0, None
    if args.resume is not None:
        state = torch.load(args.resume, weights_only=True)
        step, acc, resumed = int(state["step"]), float(state["acc"]), str(args.resume)
        if state["world"] != world or abs(acc - step * expected) > 1e-9 * max(1.0, acc):
            raise SystemExit(f"inconsistent checkpoint {args.resume}: {state}")
        print(f"rank {rank}: resumed from {args.resume} at step {step}", flush=True)
    start = step
    flag = torch.zeros(1, device=device)
    while step < args.steps:
        x = torch.tensor([rank + 1.0], dtype=torch.float64, device=device)
        dist.all_reduce(x)
        if abs(x.item() - expected) > 1e-12:
            raise SystemExit(f"rank {rank}: all-reduce gave {x.item()}, expected {expected}")
        acc += x.item()
        step += 1
        if step % 10 == 0 and rank == 0:
            print(f"step {step}/{args.steps}", flush=True)
        # every rank must stop at the same step, whichever one saw the signal first
        flag.fill_(1.0 if stop["flag"] else 0.0)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if flag.item() > 0:
            break
        time.sleep(args.step_seconds)
    state = {"step": step, "acc": acc, "world": world}
    if rank == 0:
        save_checkpoint(ckpt, state)
    stopped_early = step < args.steps
    record = {
        "rank": rank,
        "world": world,
        "local_rank": local,
        "host": host,
        "coords": dict(zip(("batch", "ensemble", "h", "w"), coords, strict=True)),
        "groups": groups,
        "master": f"{addr}:{port}",
        "start_step": start,
        "end_step": step,
        "acc": acc,
        "resumed_from": resumed,
        "stopped_by_signal": stopped_early,
        "config": str(args.config) if args.config else None,
        "restart": int(os.environ.get("SLURM_RESTART_COUNT", "0")),
    }
    (out / "ranks" / f"rank-{rank}.run-{record['restart']}.json").write_text(json.dumps(record, indent=1))
    dist.barrier()
    if rank == 0:
        (out / "result.json").write_text(json.dumps(record | {"expected_per_step": expected}, indent=1))
        print(f"{'stopped by signal' if stopped_early else 'done'} at step {step}; checkpoint {ckpt}", flush=True)
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
