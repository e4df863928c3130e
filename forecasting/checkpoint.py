"""The one checkpoint format: written by training (serial or on any parallel layout), read by resume and inference.

A checkpoint is one ``torch.save`` file holding only tensors and plain containers/scalars:

* ``model``, ``optimizer``, ``scheduler``: ``state_dict`` s of the current stage;
* ``rng``: the global torch RNG state and the state of every noise/data generator the trainer owns;
* ``position``: completed global steps, stage index, consecutive bad steps (the data order is a pure function
  of ``(seed, stage, step)``, so the step counter *is* the data position);
* ``config``: the resolved :class:`~sciml.forecasting.train.config.TrainConfig` as a plain dict, and
  ``model_config`` the resolved :class:`~sciml.forecasting.models.FCN3Config` (so inference rebuilds the model
  without the YAML file), plus ``data``: the :class:`DataFacts` (grid, channels, stats) that inference checks its
  inputs against, with the normalisation ``mean`` and ``std``.

Layouts: every parameter (so every optimiser state entry) is replicated on all ranks of a parallel run (spatial
ranks use slices of the spectral weights but keep them whole), so the checkpoint is the plain serial
``state_dict`` and loads serially or at any ``h x w x ensemble x batch`` layout. Run in parallel,
:func:`save_checkpoint` is collective: it first checks that the replicas agree (a missed gradient synchronisation
would otherwise be saved silently), then rank 0 writes.

Loading uses ``weights_only=True``: a checkpoint from elsewhere is data, never code. Writing goes through
:func:`sciml.io.atomic_path` (temporary sibling + ``fsync`` + ``os.replace``), so a crash in the middle of a write
leaves the previous checkpoint intact under the final name; a full disk is one line naming the device, and the
previous checkpoint stays.

Integrity: ``sha256`` is the SHA-256 of the payload's content (:func:`content_hash`: every key, scalar, tensor
dtype, shape and byte, in order), written with it and verified on load, so flipped bytes in tensor data are
refused instead of being trained on. Checkpoints written before the hash existed load with a warning.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from sciml.config import from_dict, to_dict
from sciml.errors import SciMLError, UsageError
from sciml.io import atomic_path

if TYPE_CHECKING:
    from sciml.forecasting.distributed.context import CommGroup

LOGGER = logging.getLogger(__name__)
FORMAT = "sciml.forecast.train/1"
CHECKPOINT_NAME = "checkpoint.pt"
# Written by the weights-only save of early parallel code; it lacks the config and data facts a run needs.
WEIGHTS_ONLY_FORMAT = "sciml.forecast.checkpoint/1"
REQUIRED = ("format", "model", "model_config", "config", "position", "data")
RESUME_REQUIRED = ("optimizer", "scheduler", "rng")  # a training resume needs these too
HASH_KEY = "sha256"
_DISK_FULL = {
    errno.ENOSPC: "no space left",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file size limit (ulimit -f) exceeded",
}


@dataclass(frozen=True)
class DataFacts:
    """Facts about the training data that a checkpoint carries so inference can check its inputs."""

    store: str
    stats: str
    channels: tuple[str, ...]
    static: tuple[str, ...]
    features: tuple[str, ...]
    feature_names: tuple[str, ...]
    grid_kind: str
    nlat: int
    nlon: int
    step_hours: int

    def as_dict(self) -> dict[str, Any]:
        return to_dict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataFacts:
        return from_dict(cls, d)


def content_hash(obj: Any) -> str:
    """SHA-256 over a nested payload of dicts, lists, tensors and scalars (the ``sha256`` key of a dict skipped).

    Tags keep ``[1, 2]`` and ``(1, 2)``, ``1`` and ``1.0``, a key and a value apart; tensors contribute dtype,
    shape and raw bytes, so any changed bit of a weight changes the hash.
    """
    h = hashlib.sha256()

    def feed(o: Any) -> None:
        if isinstance(o, torch.Tensor):
            t = o.detach().cpu().contiguous()
            h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().data)
        elif isinstance(o, dict):
            items = [(k, v) for k, v in o.items() if k != HASH_KEY]
            h.update(f"D{len(items)}".encode())
            for k, v in items:
                feed(k)
                feed(v)
        elif isinstance(o, (list, tuple)):
            h.update(f"{'L' if isinstance(o, list) else 'U'}{len(o)}".encode())
            for v in o:
                feed(v)
        else:
            h.update(f"S{type(o).__name__}:{o!r};".encode())

    feed(obj)
    return h.hexdigest()


def _mount(path: Path) -> str:
    p = path.resolve().parent
    while not os.path.ismount(p) and p != p.parent:
        p = p.parent
    return str(p)


def _write_error(exc: BaseException) -> int | None:
    """The errno of a failed write (torch wraps the OSError of a file object in a RuntimeError)."""
    cur: BaseException | None = exc
    while cur is not None:
        if isinstance(cur, OSError) and cur.errno is not None:
            return cur.errno
        cur = cur.__cause__ or cur.__context__
    return None


def save_checkpoint(
    path: str | Path, payload: dict[str, Any], group: CommGroup | None = None, replica_tol: float = 0.0
) -> Path | None:
    """Write ``payload`` (see the module docstring) to ``path`` atomically; returns ``path`` (``None`` on the ranks
    that do not write).

    With ``group`` (the world group of a parallel run) the call is collective: every rank passes its payload, the
    ``model`` tensors are compared across the group, and only rank 0 writes.

    Raises
    ------
    SciMLError
        On every rank, when the model replicas differ by more than ``replica_tol``, or when rank 0 cannot write
        (rank 0 raises its own error: a full disk is one line naming the device, and the previous checkpoint stays).
    """
    missing = [k for k in REQUIRED if k not in payload and k != "format"]
    if missing:
        raise ValueError(f"checkpoint payload lacks {missing}")
    path = Path(path)
    if group is None or group.size == 1:
        return _write(path, payload)
    from sciml.forecasting.distributed.comm import all_max, max_replica_difference

    tensors = [t for t in payload["model"].values() if torch.is_floating_point(t)]
    diff = max_replica_difference(tensors, group)
    if diff > replica_tol:
        raise SciMLError(f"model replicas differ by {diff:.3g} across ranks; refusing to save {path}")
    error: BaseException | None = None
    if group.rank == 0:
        try:
            _write(path, payload)
        except BaseException as exc:  # every rank must hear of it, not wait for the collective timeout
            error = exc
    if all_max(0.0 if error is None else 1.0, group) > 0:
        if error is not None:
            raise error
        raise SciMLError(f"rank {group.ranks[0]} could not write the checkpoint {path} (its log has the reason)")
    return path if group.rank == 0 else None


def _write(path: Path, payload: dict[str, Any]) -> Path:
    """The atomic write of one file; a full disk is one line naming the device, and the previous file stays."""
    body = {"format": FORMAT, **payload}
    body[HASH_KEY] = content_hash(body)
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            torch.save(body, fh)
    except (OSError, RuntimeError) as exc:
        code = _write_error(exc)
        if code not in _DISK_FULL:
            raise
        kept = f"previous checkpoint {path} kept" if path.exists() else "no checkpoint was written"
        raise SciMLError(f"{_DISK_FULL[code]} on {_mount(path)} while writing {path}; {kept}") from None
    LOGGER.debug("wrote checkpoint %s", path)
    return path


def load_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu", *, resume: bool = False
) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` with ``torch.load(weights_only=True)``, verifying its
    content hash (``resume=True``: it must also hold the optimiser, scheduler and RNG states).

    Raises
    ------
    UsageError
        The file does not exist, cannot be read safely (not a plain-data torch file, truncated), is corrupt (hash
        mismatch), lacks what it needs, or is not a sciml forecasting checkpoint.
    """
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise UsageError(f"checkpoint {path} does not exist; train one with `sciml forecast train --config ...`")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # random bytes fail deep inside the unpickler (IndexError, KeyError, ...)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(
            f"checkpoint {path} cannot be loaded safely (weights_only=True): {first}. It is truncated or not a "
            "sciml checkpoint; checkpoints that would run code when loaded are refused"
        ) from None
    if isinstance(payload, dict) and payload.get("format") == WEIGHTS_ONLY_FORMAT:
        raise UsageError(
            f"{path} holds model weights only (format {WEIGHTS_ONLY_FORMAT}), without the training config and data "
            "facts that resume and inference need; load its 'model' state_dict into FCN3 yourself, or train with "
            "`sciml forecast train`, which writes complete checkpoints at any layout"
        )
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise UsageError(f"{path} is not a sciml forecasting training checkpoint (format {found!r}, need {FORMAT})")
    if HASH_KEY in payload:
        if payload[HASH_KEY] != content_hash(payload):
            raise UsageError(
                f"checkpoint {path} is corrupt: its content does not match the sha256 written with it; resume from "
                "another checkpoint or restore this one from a copy"
            )
    else:
        LOGGER.warning("checkpoint %s has no content hash (written by an older sciml): loaded unverified", path)
    need = REQUIRED + (RESUME_REQUIRED if resume else ())
    missing = [k for k in need if k not in payload]
    if missing:
        raise UsageError(
            f"checkpoint {path} lacks {missing}; it is damaged or was not written by `sciml forecast train`"
        )
    return payload


def generator_states(generators: list[torch.Generator]) -> list[torch.Tensor]:
    """RNG states of ``generators`` (uint8 tensors, safe to ``torch.load`` with ``weights_only``)."""
    return [g.get_state() for g in generators]


def restore_generators(generators: list[torch.Generator], states: list[torch.Tensor]) -> None:
    """Set each generator's state; the counts must match (same ensemble size and layout)."""
    if len(generators) != len(states):
        raise UsageError(f"checkpoint holds {len(states)} generator states but the run has {len(generators)}")
    for g, s in zip(generators, states, strict=True):
        g.set_state(s)
