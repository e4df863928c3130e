"""Dataset spec: the channel list (and optional static fields and time range) a conversion keeps, from YAML.

.. code-block:: yaml

    channels: [z500, t850, u10m, v10m, t2m]
    static: [orog, lsm]      # optional; omitted = keep every static field the source has, [] = none
    start: "2016-01-01"      # optional, inclusive
    end: "2017-12-31T18:00"  # optional, inclusive
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from sciml.config import from_yaml


@dataclass(frozen=True)
class DatasetSpec:
    """Channels (in order) and optional static fields / time range of a canonical store."""

    channels: tuple[str, ...]
    static: tuple[str, ...] | None = None
    start: str | None = None
    end: str | None = None

    def __post_init__(self) -> None:
        if not self.channels:
            raise ValueError("channels must list at least one channel")
        dup = sorted({c for c in self.channels if self.channels.count(c) > 1})
        if dup:
            raise ValueError(f"channels listed twice: {dup}")


def load_spec(path: str | os.PathLike[str]) -> DatasetSpec:
    """Read a :class:`DatasetSpec` YAML (unknown keys are errors)."""
    return from_yaml(DatasetSpec, path)
