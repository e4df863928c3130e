"""Atomic output: results and checkpoints either appear whole or not at all.

A crash (or a SLURM kill) in the middle of a write must never leave a truncated file under the final name,
so every writer goes to a temporary sibling and ``os.replace`` moves it into place (atomic on POSIX for
files; for directories such as zarr stores the old one is moved aside first).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike[str], *, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``dest``; move it onto ``dest`` when the block succeeds.

    Parameters
    ----------
    dest
        Final file (or directory, with ``directory=True``) name.
    directory
        Create the temporary path as an empty directory (for zarr stores), else as a file name.

    On an exception the temporary path is removed and ``dest`` is left untouched.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    target = tmp if directory else tmp / dest.name
    try:
        yield target
        if directory:
            old = None
            if dest.exists():
                old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
                os.replace(dest, old)
            os.replace(tmp, dest)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        else:
            with open(target, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(target, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def atomic_write_text(dest: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``dest`` atomically and return the path."""
    with atomic_path(dest) as tmp:
        tmp.write_text(text)
    return Path(dest)


def atomic_write_json(dest: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``dest`` atomically (NaN/inf are written as strings)."""

    def _default(o: Any) -> Any:
        if hasattr(o, "item"):  # numpy / torch scalars
            return o.item()
        if hasattr(o, "tolist"):
            return o.tolist()
        return str(o)

    return atomic_write_text(dest, json.dumps(obj, indent=2, default=_default, sort_keys=False) + "\n")
