"""Atomic output: results and checkpoints either appear whole or not at all.

A crash (or a SLURM kill) in the middle of a write must never leave a truncated file under the final name,
so every writer goes to a temporary sibling and ``os.replace`` moves it into place (atomic on POSIX for
files; for directories such as zarr stores the old one is moved aside first).

Temporary siblings are named ``.NAME.HOST-PID-XXXX.tmp`` and an old directory moved aside ``.NAME.old-HOST-PID``,
so the next write to the same target can tell leftovers of a killed process (same host, process gone) from work
in progress: it removes the former and logs their size, and only reports siblings it cannot attribute. An old
directory left by a process killed between the two renames, with the target missing, is moved back into place.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

LOGGER = logging.getLogger(__name__)


def _owner() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def tree_size(path: Path) -> int:
    """Bytes in ``path`` (a file, or every file below a folder)."""
    if not path.is_dir():
        return path.stat().st_size if path.exists() else 0
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n} bytes"


def clean_stale_siblings(dest: str | os.PathLike[str]) -> list[str]:
    """Remove leftovers of killed writers of ``dest`` (temporaries, moved-aside old copies); returns what was done.

    Only siblings written by a process of this host that no longer exists are removed; others (another host, a
    live process, names of older sciml versions) are reported with their size and left alone.
    """
    dest = Path(dest)
    if not dest.parent.is_dir():
        return []
    host = socket.gethostname()
    pat = re.compile(
        rf"^\.{re.escape(dest.name)}\.(?:(?P<old>old-)(?P<ohost>.+)-(?P<opid>\d+)|(?P<host>.+)-(?P<pid>\d+)-[a-z0-9_]+\.tmp)$"
    )
    legacy = re.compile(rf"^\.{re.escape(dest.name)}\.(?:old-\d+|[a-z0-9_]+\.tmp)$")
    done = []
    for p in sorted(dest.parent.iterdir()):
        m = pat.match(p.name)
        if m is None:
            if legacy.match(p.name):
                done.append(f"found {p} ({_mb(tree_size(p))}) left by an interrupted write; remove it if unused")
                LOGGER.warning(done[-1])
            continue
        owner_host = m.group("ohost") or m.group("host")
        pid = int(m.group("opid") or m.group("pid"))
        if owner_host != host or _alive(pid):
            if owner_host != host:
                done.append(f"found {p} ({_mb(tree_size(p))}) from host {owner_host}; remove it if that run is over")
                LOGGER.warning(done[-1])
            continue
        if m.group("old") and not dest.exists():
            os.replace(p, dest)  # killed between the two renames: the previous result is the complete one
            done.append(f"restored {dest} from {p.name} left by a process killed while replacing it")
        else:
            size = tree_size(p)
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
            done.append(f"removed {p} ({_mb(size)}) left by a killed process (pid {pid})")
        LOGGER.warning(done[-1])
    return done


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
    clean_stale_siblings(dest)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.{_owner()}-", suffix=".tmp", dir=dest.parent))
    target = tmp if directory else tmp / dest.name
    try:
        yield target
        if directory:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private (0700); a result folder is an ordinary one
            old = None
            if dest.exists():
                old = dest.with_name(f".{dest.name}.old-{_owner()}")
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
