"""Checkpoints that load at any parallel layout.

Every parameter (and so every optimiser state entry) is replicated on all ranks: spatial ranks use slices of the
spectral weights but keep them whole, and the gradient rule of :mod:`.comm` keeps replicas identical. A
checkpoint is therefore the plain serial ``state_dict``, written once by rank 0 (atomically) after checking that
the replicas agree, and readable by a serial run or by any other ``h x w x ensemble x batch`` layout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from sciml.errors import SciMLError, UsageError
from sciml.io import atomic_path

from ..train.checkpoint import HASH_KEY, content_hash
from .comm import max_replica_difference
from .context import ParallelContext

FORMAT = "sciml.forecast.checkpoint/1"


def save_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    ctx: ParallelContext,
    optimizer: torch.optim.Optimizer | None = None,
    extra: dict[str, Any] | None = None,
    replica_tol: float = 0.0,
) -> Path:
    """Write ``model`` (and ``optimizer``) state from rank 0; collective: every rank must call it.

    Raises :class:`SciMLError` on every rank if the parameter replicas differ by more than ``replica_tol``
    (a missed gradient synchronisation would otherwise be saved silently).
    """
    diff = max_replica_difference([p.detach() for p in model.parameters()], ctx.group("world"))
    if diff > replica_tol:
        raise SciMLError(f"parameter replicas differ by {diff:.3g} across ranks; refusing to save {path}")
    path = Path(path)
    if ctx.rank == 0:
        payload = {
            "format": FORMAT,
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "optimizer": None if optimizer is None else optimizer.state_dict(),
            "layout": {"batch": ctx.mesh.batch, "ensemble": ctx.mesh.ensemble, "h": ctx.mesh.h, "w": ctx.mesh.w},
            "extra": extra or {},
        }
        payload[HASH_KEY] = content_hash(payload)
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)
    if ctx.world_size > 1:
        dist.barrier(group=ctx.group("world").handle)
    return path


def load_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    map_location: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Load a checkpoint written at any layout into ``model`` (serial or distributed); returns the payload."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)  # data, never code
    except Exception as exc:
        raise UsageError(f"checkpoint {path} cannot be loaded safely: {type(exc).__name__}: {exc}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UsageError(f"{path} is not a sciml forecasting checkpoint (format {FORMAT})")
    if HASH_KEY in payload and payload[HASH_KEY] != content_hash(payload):
        raise UsageError(f"checkpoint {path} is corrupt: its content does not match the sha256 written with it")
    model.load_state_dict(payload["model"])
    if optimizer is not None:
        if payload["optimizer"] is None:
            raise UsageError(f"checkpoint {path} holds no optimiser state")
        optimizer.load_state_dict(payload["optimizer"])
    return payload
