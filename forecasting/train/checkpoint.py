"""Training checkpoints: atomic writes, safe loads (``torch.load(weights_only=True)``), everything to resume.

A checkpoint is one ``torch.save`` file holding only tensors and plain containers/scalars:

* ``model``, ``optimizer``, ``scheduler``: ``state_dict`` s of the current stage;
* ``rng``: the global torch RNG state and the state of every noise/data generator the trainer owns;
* ``position``: completed global steps, stage index, consecutive bad steps (the data order is a pure function
  of ``(seed, stage, step)``, so the step counter *is* the data position);
* ``config``: the resolved :class:`~sciml.forecasting.train.config.TrainConfig` as a plain dict, and
  ``model_config`` the resolved :class:`~sciml.forecasting.models.FCN3Config` (so inference rebuilds the model
  without the YAML file), plus ``data`` facts (grid, channels, stats) that inference checks its inputs against.

Loading uses ``weights_only=True``: a checkpoint from elsewhere is data, never code. Writing goes through
:func:`sciml.io.atomic_path` (temporary sibling + ``fsync`` + ``os.replace``), so a crash in the middle of a write
leaves the previous checkpoint intact under the final name.
"""

from __future__ import annotations

import logging
import pickle
from pathlib import Path
from typing import Any

import torch

from sciml.errors import UsageError
from sciml.io import atomic_path

LOGGER = logging.getLogger(__name__)
FORMAT = "sciml.forecast.train/1"
CHECKPOINT_NAME = "checkpoint.pt"
REQUIRED = ("format", "model", "model_config", "config", "position", "data")


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (see the module docstring) to ``path`` atomically; returns ``path``."""
    missing = [k for k in REQUIRED if k not in payload and k != "format"]
    if missing:
        raise ValueError(f"checkpoint payload lacks {missing}")
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, **payload}, tmp)
    LOGGER.debug("wrote checkpoint %s", path)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` with ``torch.load(weights_only=True)``.

    Raises
    ------
    UsageError
        The file does not exist, cannot be read safely (not a plain-data torch file, truncated), or is not a
        sciml forecasting checkpoint.
    """
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise UsageError(f"checkpoint {path} does not exist; train one with `sciml forecast train --config ...`")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(
            f"checkpoint {path} cannot be loaded safely (weights_only=True): {first}. It is truncated or not a "
            "sciml checkpoint; checkpoints that would run code when loaded are refused"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise UsageError(f"{path} is not a sciml forecasting training checkpoint (format {found!r}, need {FORMAT})")
    missing = [k for k in REQUIRED if k not in payload]
    if missing:
        raise UsageError(f"checkpoint {path} lacks {missing}; it was not written by `sciml forecast train`")
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
