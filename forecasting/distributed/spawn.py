"""Run a function on N local processes that look like torchrun ranks: the multi-process test and benchmark harness.

Each child gets ``RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR=127.0.0.1, MASTER_PORT`` (a free port) and
``OMP_NUM_THREADS=1`` in its environment, so the code under test initialises exactly as under torchrun (through
:func:`.context.init_parallel`). The parent watches the children: as soon as one exits non-zero (an exception, a
collective timeout) the others are terminated and the job fails, and a job that outlives ``timeout_s`` is killed,
so a broken rank can never hang the caller.

``fork`` (the default on Linux) starts ranks in milliseconds because torch is already imported; the function
then needs no pickling. ``spawn`` re-imports everything (seconds per rank) and needs an importable function.
"""

from __future__ import annotations

import faulthandler
import multiprocessing as mp
import os
import socket
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sciml.errors import SciMLError


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class LocalRun:
    """Outcome of :func:`run_local`: exit code per rank (negative: killed by that signal), timeout flag, wall time."""

    exitcodes: tuple[int, ...]
    timed_out: bool
    seconds: float

    @property
    def ok(self) -> bool:
        return not self.timed_out and all(c == 0 for c in self.exitcodes)


def _child(
    fn: Callable[..., Any], rank: int, world: int, port: int, args: tuple, kwargs: dict, dump_after: float
) -> None:
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        OMP_NUM_THREADS="1",
    )
    # a rank still running shortly before the parent kills the job prints where it is stuck
    faulthandler.dump_traceback_later(dump_after, exit=False)
    code = 0
    try:
        fn(*args, **kwargs)
    except BaseException:  # noqa: BLE001 - report anything, then exit non-zero
        sys.stderr.write(f"[rank {rank}] failed:\n{traceback.format_exc()}")
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        # os._exit: a forked child must not run the parent's atexit handlers (pytest, logging, ...)
        os._exit(code)


def run_local(
    fn: Callable[..., Any],
    world_size: int,
    *,
    args: tuple = (),
    kwargs: dict | None = None,
    timeout_s: float = 300.0,
    start_method: str = "fork",
    grace_s: float = 5.0,
) -> LocalRun:
    """Run ``fn(*args, **kwargs)`` on ``world_size`` local ranks and wait for all of them.

    Parameters
    ----------
    fn
        Runs in every rank; it usually calls :func:`.context.init_parallel` and communicates.
    timeout_s
        Wall-clock limit for the whole job; on expiry every rank is killed and ``timed_out`` is set.
    grace_s
        After the first failing rank, how long the others get to exit by themselves before being terminated.
    """
    if world_size < 1:
        raise SciMLError(f"world_size must be >= 1, got {world_size}")
    mpctx = mp.get_context(start_method)
    port = free_port()
    procs = [
        mpctx.Process(  # type: ignore[attr-defined]  # get_context() is typed as the base context
            target=_child, args=(fn, r, world_size, port, args, kwargs or {}, max(timeout_s - 2.0, 1.0)), daemon=False
        )
        for r in range(world_size)
    ]
    t0 = time.monotonic()
    for p in procs:
        p.start()
    timed_out = False
    first_failure: float | None = None
    while True:
        codes = [p.exitcode for p in procs]
        if all(c is not None for c in codes):
            break
        now = time.monotonic()
        if any(c not in (None, 0) for c in codes) and first_failure is None:
            first_failure = now
        if first_failure is not None and now - first_failure > grace_s:
            break
        if now - t0 > timeout_s:
            timed_out = True
            break
        time.sleep(0.05)
    for p in procs:
        if p.exitcode is None:
            p.terminate()
    for p in procs:
        p.join(2.0)
        if p.exitcode is None:
            p.kill()
            p.join()
    final = tuple(int(p.exitcode) if p.exitcode is not None else -9 for p in procs)
    return LocalRun(final, timed_out, time.monotonic() - t0)
