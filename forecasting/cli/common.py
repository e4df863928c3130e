"""Helpers shared by the forecasting commands: ``--set`` overrides and the writing rank's run lock."""

from __future__ import annotations

import contextlib
from pathlib import Path

from sciml.errors import UsageError


def parse_set(items: list[str]) -> dict:
    """``--set KEY=VALUE`` items as a dict of dotted keys to YAML-parsed values."""
    import yaml

    out = {}
    for text in items:
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set expects KEY=VALUE (dotted keys, e.g. stages.0.steps=10), got {text!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


def is_rank0() -> bool:
    """Whether this process is rank 0 of its launcher (torchrun, srun) or runs alone: the one that writes."""
    import os

    from sciml.forecasting.distributed.env import launch_env

    return launch_env(os.environ, host_of=lambda hosts: hosts).rank == 0


def writer_lock(out: Path, writer: bool, command: str):
    """The run lock of ``out`` (:mod:`sciml.runlock`), held by the writing rank only."""
    from sciml.runlock import run_lock

    return run_lock(out, command) if writer else contextlib.nullcontext()
