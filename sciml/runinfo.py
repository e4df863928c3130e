"""Self-describing result directories: every run records config, version, seed and timings."""

from __future__ import annotations

import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sciml import __version__
from sciml.config import save_yaml
from sciml.io import atomic_write_json


@dataclass
class RunInfo:
    """Provenance of one run, written as ``run.json`` beside the results."""

    command: str
    seed: int | None = None
    started: float = field(default_factory=time.time)
    timings: dict[str, float] = field(default_factory=dict)
    status: str | None = None  # e.g. running, done, interrupted, failed (long runs rewrite run.json at the end)
    runtime: dict[str, Any] = field(default_factory=dict)  # device, precision, peak memory, steps/s, ...

    def as_dict(self) -> dict[str, Any]:
        return {
            "sciml_version": __version__,
            "command": self.command,
            "seed": self.seed,
            "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started)),
            "wall_time_s": time.time() - self.started,
            "timings_s": self.timings,
            **({"status": self.status} if self.status is not None else {}),
            **({"runtime": self.runtime} if self.runtime else {}),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
        }


def write_run_dir(out: str | Path, config: Any, info: RunInfo) -> Path:
    """Write ``config.yaml`` (the resolved config) and ``run.json`` into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_yaml(config, out / "config.yaml")
    atomic_write_json(out / "run.json", info.as_dict())
    return out
