"""Which config changes a resumed training run accepts, and from when they apply.

A resumed run must be the same experiment: the data order is a pure function of ``(seed, stage, step)`` and the
weights carry the model, data, noise and loss of the checkpoint. So on ``--resume``

* **refused** (the run stops with the list of keys): ``seed``, ``model.*``, ``data.*``, ``noise.*``, ``loss.*``,
  every key of a completed stage (and removing one), and in the stage the checkpoint is in: everything except
  the keys below;
* **applied from the resume step on** (visible in ``train.csv``): in the current stage ``steps`` (not below the
  steps it has done), ``lr``, ``clip`` and the schedule (``schedule``, ``warmup_steps``, ``min_lr_ratio``,
  ``step_every``, ``step_gamma``); every key of a later stage, adding or removing later stages; ``validation.*``,
  ``checkpoint_every``, ``nan_policy``, ``max_bad_steps``, ``runtime.*`` (a checkpoint loads on any device and
  precision), ``name``; and ``--max-steps``.
"""

from __future__ import annotations

from typing import Any

from sciml.config import to_dict

from .config import TrainConfig

FROZEN_SECTIONS = ("seed", "model", "data", "noise", "loss")
CURRENT_STAGE_MUTABLE = ("steps", "lr", "clip", "schedule", "warmup_steps", "min_lr_ratio", "step_every", "step_gamma")


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted keys of a config dict; stages are indexed (``stages.0.lr``), other lists are values."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flat(v, key + "."))
        elif key == "stages":
            for i, s in enumerate(v):
                out.update(_flat(s, f"stages.{i}."))
        else:
            out[key] = v
    return out


def resume_changes(old: TrainConfig, new: TrainConfig, step: int) -> tuple[list[str], list[str]]:
    """``(refused, applied)``: dotted keys that differ between the checkpoint's config ``old`` and ``new``.

    ``step`` is the number of completed global steps of the checkpoint.
    """
    a, b = _flat(to_dict(old)), _flat(to_dict(new))
    ends = [sum(s.steps for s in old.stages[: i + 1]) for i in range(len(old.stages))]
    done = sum(1 for e in ends if e <= step)  # completed stages
    current = done if step < old.total_steps else None
    refused, applied = [], []
    for key in sorted(set(a) | set(b), key=lambda k: (k.split(".")[0] != "stages", k)):
        if a.get(key, _MISSING) == b.get(key, _MISSING):
            continue
        top = key.split(".")[0]
        if top == "stages":
            i, field = int(key.split(".")[1]), key.split(".", 2)[2]
            if i < done:
                refused.append(f"{key} (stage {i} is complete)")
            elif i == current and field not in CURRENT_STAGE_MUTABLE:
                refused.append(f"{key} (stage {i} is in progress)")
            elif i == current and field == "steps" and key in b and b[key] < step - (ends[i] - old.stages[i].steps):
                refused.append(f"{key} (stage {i} has done {step - (ends[i] - old.stages[i].steps)} steps)")
            else:
                applied.append(key)
        elif top in FROZEN_SECTIONS:
            refused.append(key)
        else:
            applied.append(key)
    return refused, applied


_MISSING = object()
