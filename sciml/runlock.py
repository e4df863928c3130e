"""One writer per output: an advisory lock (``fcntl.flock``) on a hidden sibling ``.NAME.lock`` of the target.

``sciml forecast train``, ``forecast infer``, ``solve`` (and its sweeps) hold the lock of their output for the whole
run, so a second process aimed at the same run directory or store stops at once with one line (exit 2) instead of
interleaving checkpoints. The lock lives beside the target, not inside it, because results are replaced as whole
directories (:func:`sciml.io.atomic_path`). The kernel releases it when the process exits, even on ``kill -9``:
there is never a stale lock to clean up (a file left by a killed holder is simply locked again). The file records
the holder (host, pid, command) for the message and is removed on a normal release.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

from sciml.errors import UsageError


def lock_path(target: str | os.PathLike[str]) -> Path:
    """The lock file of ``target``: ``.NAME.lock`` in the same folder."""
    t = Path(target).absolute()
    return t.with_name(f".{t.name}.lock")


@contextlib.contextmanager
def run_lock(target: str | os.PathLike[str], command: str | None = None) -> Iterator[Path]:
    """Hold the exclusive lock of ``target`` for the duration of the block.

    Raises
    ------
    UsageError
        Another process holds it (the message names that process when it recorded itself).
    """
    path = lock_path(target)
    while True:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise UsageError(
                f"cannot create the lock file {path} of {target}: {exc.strerror}; choose another output"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise UsageError(
                f"{target} is in use by {holder}; wait for it to finish, stop it, or choose another output"
            ) from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder removed the file between our open and flock: lock the new one
    try:
        me = f"pid {os.getpid()} on {socket.gethostname()} ({command or ' '.join(sys.argv[:3])})"
        os.ftruncate(fd, 0)
        os.pwrite(fd, me.encode(), 0)
        yield path
    finally:
        path.unlink(missing_ok=True)  # while still locked: nothing is left beside the output
        os.close(fd)  # releases the lock
