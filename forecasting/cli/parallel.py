"""The ``--h-parallel/--w-parallel/--ensemble-parallel`` flags and the run's parallel context
(:func:`parallel_context`), from which ``train`` and ``infer`` choose the serial or the tiled loop.

``sciml forecast train --config CFG --h-parallel 2 --w-parallel 2`` under ``torchrun --nproc_per_node 4`` (or one
``srun`` task per GPU) runs on a 2 x 2 tile split; data parallelism takes the remaining ranks. Without a launcher
and without splits the serial trainer runs unchanged.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from ..distributed.env import launch_env

if TYPE_CHECKING:  # the flags are registered on every `sciml` start: no torch at import time
    from ..distributed.context import ParallelConfig, ParallelContext
    from ..runtime import RuntimeSection


def add_parallel_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the mesh flags to a sub-command's parser."""
    g = parser.add_argument_group("parallel layout (under torchrun or srun; data parallel = the remaining ranks)")
    g.add_argument("--h-parallel", type=int, default=1, metavar="H", help="ranks along latitude (default 1)")
    g.add_argument("--w-parallel", type=int, default=1, metavar="W", help="ranks along longitude (default 1)")
    g.add_argument(
        "--ensemble-parallel", type=int, default=1, metavar="E", help="ranks sharing one ensemble (default 1)"
    )
    g.add_argument(
        "--comm-timeout", type=float, default=600.0, metavar="S", help="collective timeout in seconds (default 600)"
    )


def parallel_config(args: argparse.Namespace, runtime: RuntimeSection | None = None) -> ParallelConfig:
    """:class:`ParallelConfig` from the flags of :func:`add_parallel_arguments` and the run's ``runtime`` section
    (its threads per rank; ``device: cpu`` communicates with gloo, ``cuda`` with NCCL, ``auto`` picks)."""
    from ..distributed.context import ParallelConfig
    from ..runtime import RuntimeSection, parse_device_spec

    runtime = runtime or RuntimeSection()
    kind, _ = parse_device_spec(runtime.device)
    return ParallelConfig(
        h=args.h_parallel,
        w=args.w_parallel,
        ensemble=args.ensemble_parallel,
        timeout_s=args.comm_timeout,
        threads_per_rank=runtime.threads or 1,
        backend={"cpu": "gloo", "cuda": "nccl"}.get(kind),
    )


def wants_parallel(config: ParallelConfig, environ: Mapping[str, str] | None = None) -> bool:
    """Whether a run must start ``torch.distributed``: a launcher with several ranks, or a split was asked for."""
    env = launch_env(os.environ if environ is None else environ)
    return env.world_size > 1 or config.h * config.w * config.ensemble > 1


@contextlib.contextmanager
def parallel_context(config: ParallelConfig) -> Iterator[ParallelContext | None]:
    """The run's parallel context, closed on exit: started when :func:`wants_parallel` (a launcher with several
    ranks, or a split), ``None`` for a serial run, which never starts ``torch.distributed``. Training and inference
    choose their loop from it the same way: serial when ``None``, tiled otherwise."""
    if not wants_parallel(config):
        yield None
        return
    from ..distributed.context import init_parallel

    ctx = init_parallel(config)
    try:
        yield ctx
    finally:
        ctx.close()
