r"""Where and how a forecasting run computes: device, precision, activation checkpointing, compilation, threads.

One :class:`Runtime` per run, built from the ``runtime`` section of a training config (or the flags of
``sciml forecast train | infer``) and resolved once against the machine:

* ``device``: ``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``. Under torchrun/SLURM every
  rank uses ``cuda:LOCAL_RANK`` (the parallel context picks it; ``auto`` and ``cuda`` follow it). Asking for CUDA on a
  machine without it is a usage error, never a silent CPU run.
* ``precision``: ``fp32`` or ``bf16``. ``bf16`` runs the network under :func:`torch.autocast` in bfloat16; the
  spherical transforms, DISCO contractions and the CRPS stay float32 (as in FCN3: torch-harmonics' transforms run
  in float32 inside autocast, and the losses are computed outside of it), and the optimiser state is float32 because
  the weights are.
* ``checkpointing``: ``none`` or ``blocks`` (recompute each processor block in the backward pass,
  :class:`~sciml.forecasting.models.FCN3` ``checkpoint_blocks``).
* ``compile``: :func:`torch.compile` of the network (off by default: compilation takes minutes on large models).
* ``threads``: torch intra-op threads of the process (``None``: torch's default, which follows ``OMP_NUM_THREADS``).
  A value here makes results independent of the environment the user happens to have.
* ``loader_workers``, ``prefetch``: data-loading worker processes and batches prefetched per worker (the trainer's
  ``DataLoader``, :mod:`sciml.forecasting.data.loader`; batches are pinned when the device is CUDA).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from sciml.errors import UsageError

if TYPE_CHECKING:
    import torch

Precision = Literal["fp32", "bf16"]
Checkpointing = Literal["none", "blocks"]


@dataclass(frozen=True)
class RuntimeSection:
    """The ``runtime`` section of a training config (see the module docstring)."""

    device: str = "auto"
    precision: Precision = "fp32"
    checkpointing: Checkpointing = "none"
    compile: bool = False
    threads: int | None = None
    loader_workers: int = 0
    prefetch: int = 2

    def __post_init__(self) -> None:
        parse_device_spec(self.device)
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"runtime.threads must be >= 1, got {self.threads}")
        if self.loader_workers < 0 or self.prefetch < 1:
            raise ValueError(
                f"runtime.loader_workers must be >= 0 and runtime.prefetch >= 1, got {self.loader_workers}, "
                f"{self.prefetch}"
            )


def apply_threads(section: RuntimeSection) -> None:
    """Set torch's intra-op threads of this process to ``section.threads`` (``None``: leave torch's default)."""
    if section.threads is not None:
        import torch

        torch.set_num_threads(section.threads)


def parse_device_spec(spec: str) -> tuple[str, int | None]:
    """``("auto"|"cpu"|"cuda", index or None)`` of a device string; anything else is a usage error."""
    kind, _, index = spec.partition(":")
    if kind in ("auto", "cpu") and not index:
        return kind, None
    if kind == "cuda" and (not index or index.isdigit()):
        return kind, int(index) if index else None
    raise UsageError(f"device {spec!r} is not one of auto, cpu, cuda, cuda:N")


def resolve_device(spec: str = "auto", local_rank: int | None = None) -> torch.device:
    """The :class:`torch.device` of a device string on this machine.

    ``local_rank`` (a launcher's ``LOCAL_RANK``) picks the GPU of a rank for ``auto`` and ``cuda``.

    Raises
    ------
    UsageError
        CUDA was asked for and is not available, or ``cuda:N`` names a GPU that does not exist.
    """
    import torch

    kind, index = parse_device_spec(spec)
    if kind == "cpu" or (kind == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UsageError(
            f"device {spec!r} asked for, but CUDA is not available here (torch {torch.__version__}, "
            f"built for CUDA {torch.version.cuda}); use --device cpu or auto"
        )
    count = torch.cuda.device_count()
    if index is None:
        index = (local_rank or 0) % count
    if index >= count:
        raise UsageError(f"device {spec!r}: this machine has {count} GPU(s) (cuda:0..cuda:{count - 1})")
    return torch.device("cuda", index)


@dataclass(frozen=True)
class Runtime:
    """A :class:`RuntimeSection` resolved on this machine: the device and how the network runs there."""

    device: torch.device
    precision: Precision = "fp32"
    checkpointing: Checkpointing = "none"
    compile: bool = False

    @classmethod
    def from_section(cls, section: RuntimeSection, local_rank: int | None = None) -> Runtime:
        device = resolve_device(section.device, local_rank)
        if device.type == "cuda":
            import torch

            # the current device is what pinned memory, new CUDA tensors and streams default to: GPU N, not 0
            torch.cuda.set_device(device)
        return cls(device, section.precision, section.checkpointing, section.compile)

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """The network's precision: bfloat16 autocast for ``bf16``, nothing for ``fp32``."""
        import torch

        if self.precision == "fp32":
            yield
            return
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16):
            yield

    def describe(self) -> dict[str, object]:
        """What ``run.json`` records about the device: its name, kind, precision and the network options."""
        import torch

        name = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu"
        return {
            "device": str(self.device),
            "device_name": name,
            "precision": self.precision,
            "checkpointing": self.checkpointing,
            "compile": self.compile,
        }

    def reset_peak_memory(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def peak_memory_bytes(self) -> int | None:
        """Peak device memory allocated since the last reset (``None`` on CPU, where torch does not track it)."""
        import torch

        return int(torch.cuda.max_memory_allocated(self.device)) if self.device.type == "cuda" else None
