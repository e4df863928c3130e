"""Helpers shared by the forecasting commands: ``--set`` overrides, the runtime flags, the writing rank's run lock."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import Any

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


def add_runtime_arguments(parser: argparse.ArgumentParser, training: bool = True) -> None:
    """``--device``, ``--precision`` (and for training ``--checkpointing``, ``--compile``): the ``runtime``
    section of the config from the command line (:mod:`sciml.forecasting.runtime`)."""
    where = "the config's runtime section" if training else "auto, fp32"
    g = parser.add_argument_group(f"device and precision (default: {where})")
    g.add_argument("--device", default=None, help="auto (CUDA when available), cpu, cuda or cuda:N")
    g.add_argument("--precision", choices=["fp32", "bf16"], default=None, help="bf16: autocast for the network")
    if training:
        g.add_argument(
            "--checkpointing",
            choices=["none", "blocks"],
            default=None,
            help="blocks: recompute each processor block in the backward pass (less memory)",
        )
        g.add_argument("--compile", action="store_true", default=None, help="torch.compile the network")


def runtime_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """``--set``-style overrides (``runtime.device`` ...) of the flags that were given."""
    keys = ("device", "precision", "checkpointing", "compile")
    return {f"runtime.{k}": getattr(args, k) for k in keys if getattr(args, k, None) is not None}
