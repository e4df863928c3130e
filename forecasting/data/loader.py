r"""Training batches from worker processes: a ``DataLoader`` over a fixed, resumable order of batches.

The trainer's batch order is a pure function of the step (``indices(step)`` lists the samples of a step), so the
loader is a :class:`torch.utils.data.DataLoader` whose batch sampler walks that sequence from a start step:

* ``workers`` processes (``runtime.loader_workers``) build batches ahead of the training step, each holding
  ``prefetch`` batches in flight (``runtime.prefetch``); ``workers = 0`` builds them in the training process,
  when asked, exactly as a loop over the dataset would;
* batches are pinned (page-locked) when the run computes on CUDA, so :func:`to_device` copies them with
  ``non_blocking=True`` while the GPU still works on the previous step;
* batches come out in step order whatever the number of workers (a ``DataLoader`` returns them in sampler order),
  and :class:`StepBatches` restarts the sampler at the step asked for when it is not the next one (a resumed run,
  a new stage), so a resumed run sees exactly the batches of an uninterrupted one;
* the workers share the CPUs for reading: each reads its channels with at most ``CPUs // workers`` threads.

The loader never draws from torch's global random generator (it gets its own), so turning workers on or off leaves
the run's random streams, and therefore its losses, unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch

from sciml.errors import UsageError

Batch = dict[str, torch.Tensor]
Indices = Callable[[int], list[int]]


class StepOrder(torch.utils.data.Sampler[list[int]]):
    """Batch sampler: the sample indices of steps ``start, start+1, ..., stop-1`` given by ``indices(step)``."""

    def __init__(self, indices: Indices, start: int, stop: int) -> None:
        self.indices, self.start, self.stop = indices, start, stop

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.stop):
            yield list(self.indices(step))

    def __len__(self) -> int:
        return max(0, self.stop - self.start)


def batch_loader(
    dataset: torch.utils.data.Dataset,
    indices: Indices,
    collate: Callable[[list[Any]], Batch],
    start: int,
    stop: int,
    *,
    workers: int = 0,
    prefetch: int = 2,
    pin_memory: bool = False,
) -> torch.utils.data.DataLoader:
    """A ``DataLoader`` yielding ``collate([dataset[i] for i in indices(step)])`` for ``step = start .. stop-1``.

    Parameters
    ----------
    workers
        Worker processes (0: batches are built in this process when asked for).
    prefetch
        Batches in flight per worker (``prefetch_factor``; ignored without workers).
    pin_memory
        Return batches in page-locked memory (for non-blocking copies to a CUDA device).
    """
    extra: dict[str, Any] = {}
    if workers > 0:
        extra = {"prefetch_factor": prefetch, "worker_init_fn": _ShareReadThreads(workers)}
    return torch.utils.data.DataLoader(
        dataset,
        batch_sampler=StepOrder(indices, start, stop),
        collate_fn=collate,
        num_workers=workers,
        pin_memory=pin_memory,
        # its own generator: creating an iterator draws a worker base seed, which must not advance the global one
        generator=torch.Generator().manual_seed(0),
        **extra,
    )


class _ShareReadThreads:
    """``worker_init_fn``: each of ``workers`` loader processes reads with at most ``CPUs // workers`` threads.

    A dataset with a ``threads`` attribute (:class:`~.dataset.ForecastDataset`) sizes its read pool for the whole
    process's CPUs; ``workers`` copies of it would run ``workers`` times that many decoding threads on the same
    CPUs. A picklable class, not a closure, so it reaches spawned workers too.
    """

    def __init__(self, workers: int) -> None:
        self.workers = workers

    def __call__(self, worker_id: int) -> None:
        from .dataset import _usable_cpus

        info = torch.utils.data.get_worker_info()
        ds: Any = info.dataset if info is not None else None
        threads = getattr(ds, "threads", None)
        if isinstance(threads, int):
            ds.threads = max(1, min(threads, _usable_cpus() // self.workers))


class StepBatches:
    """The batches of steps ``0 .. stop-1`` taken one step at a time (:meth:`get`), read ahead by the loader.

    Asking for the step after the last one returned continues the running loader; asking for any other step
    starts a new loader there (workers and prefetch start again), so the caller never gets a batch of a
    different step than the one it asked for.
    """

    def __init__(
        self,
        dataset: torch.utils.data.Dataset,
        indices: Indices,
        collate: Callable[[list[Any]], Batch],
        stop: int,
        *,
        workers: int = 0,
        prefetch: int = 2,
        pin_memory: bool = False,
    ) -> None:
        self.dataset, self.indices, self.collate, self.stop = dataset, indices, collate, stop
        self.workers, self.prefetch, self.pin_memory = workers, prefetch, pin_memory
        self._it: Iterator[Batch] | None = None
        self._next = -1

    def get(self, step: int) -> Batch:
        """The batch of ``step`` (``0 <= step < stop``)."""
        if not 0 <= step < self.stop:
            raise IndexError(f"step {step} outside 0..{self.stop - 1}")
        if self._it is None or step != self._next:
            self.close()
            loader = batch_loader(
                self.dataset,
                self.indices,
                self.collate,
                step,
                self.stop,
                workers=self.workers,
                prefetch=self.prefetch,
                pin_memory=self.pin_memory,
            )
            self._it = iter(loader)
        try:
            batch = next(self._it)
        except UsageError as exc:
            # a worker's UsageError comes back wrapped with its traceback: keep the one line it was raised with
            self.close()
            raise UsageError(_worker_message(str(exc))) from None
        self._next = step + 1
        return batch

    def close(self) -> None:
        """Stop the worker processes (a later :meth:`get` starts new ones)."""
        it, self._it = self._it, None
        shutdown = getattr(it, "_shutdown_workers", None)
        if shutdown is not None:  # the multi-process iterator; dropping it would also stop them, but later
            shutdown()


def to_device(batch: Batch, device: torch.device | str) -> Batch:
    """``batch`` on ``device``: copies from pinned memory are asynchronous (``non_blocking=True``).

    The copies are ordered on the device's current stream, so kernels launched afterwards on that stream see the
    data; the host may go on preparing the next step meanwhile.
    """
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def pins_memory(device: torch.device | str) -> bool:
    """Whether batches for ``device`` should be pinned: only for CUDA, and only where CUDA is available."""
    return torch.device(device).type == "cuda" and torch.cuda.is_available()


def _worker_message(text: str) -> str:
    """The original one-line message of an exception re-raised from a ``DataLoader`` worker (``text`` itself when
    it was not wrapped)."""
    last = text.strip().splitlines()[-1] if text.strip() else text
    for prefix in ("sciml.errors.UsageError: ", "UsageError: "):
        if last.startswith(prefix):
            return last[len(prefix) :]
    return text
