"""Where this process sits in the job: rank, world size, local rank and rendezvous address, read from the launcher.

Two launchers are understood, in this order:

1. **torchrun** (or any launcher setting the same variables): ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
   ``MASTER_ADDR``, ``MASTER_PORT``.
2. **SLURM** (``srun``, one task per GPU): ``SLURM_PROCID``, ``SLURM_NTASKS``, ``SLURM_LOCALID``; the master is
   the first host of ``SLURM_JOB_NODELIST`` (``MASTER_ADDR`` overrides), the port ``MASTER_PORT`` or a port derived
   from ``SLURM_JOB_ID`` so that every task of a job, on every node, agrees on it without talking.

Without either, the process is a single rank (world size 1). Host lists are expanded with
``scontrol show hostnames`` when that command exists, else by :func:`expand_hostlist`, which understands the
compressed forms SLURM writes (``node[01-03,07]``, ``gpu[1-2]-ib[0-1]``, ``a1,b[2-3]``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from sciml.errors import UsageError

DEFAULT_PORT = 29500
#: Ports derived from SLURM_JOB_ID fall in [BASE, BASE + SPAN): above the common defaults, below the ephemeral range.
SLURM_PORT_BASE = 20000
SLURM_PORT_SPAN = 10000


@dataclass(frozen=True)
class LaunchEnv:
    """Rank and rendezvous of this process as given by its launcher."""

    rank: int
    world_size: int
    local_rank: int
    master_addr: str
    master_port: int
    launcher: Literal["torchrun", "slurm", "single"]

    @property
    def init_method(self) -> str:
        """``tcp://addr:port`` for ``torch.distributed.init_process_group``."""
        addr = f"[{self.master_addr}]" if ":" in self.master_addr else self.master_addr
        return f"tcp://{addr}:{self.master_port}"


def _int(environ: Mapping[str, str], name: str, *, minimum: int = 0) -> int:
    raw = environ.get(name)
    if raw is None:
        raise UsageError(f"environment variable {name} is not set; launch with torchrun or srun, which set it")
    try:
        value = int(raw.strip())
    except ValueError:
        raise UsageError(f"environment variable {name}={raw!r} is not an integer") from None
    if value < minimum:
        raise UsageError(f"environment variable {name}={value} must be >= {minimum}")
    return value


def _port(environ: Mapping[str, str], name: str = "MASTER_PORT") -> int:
    port = _int(environ, name, minimum=1)
    if port > 65535:
        raise UsageError(f"{name}={port} is not a TCP port (1..65535)")
    return port


def _check_rank(rank: int, world: int, local: int, source: str) -> None:
    if not 0 <= rank < world:
        raise UsageError(f"{source}: rank {rank} is outside 0..{world - 1} (world size {world})")
    if not 0 <= local < world:
        raise UsageError(f"{source}: local rank {local} is outside 0..{world - 1}")


_BRACKET = re.compile(r"\[([^\[\]]*)\]")


def _split_top_level(s: str) -> list[str]:
    """Split on commas that are not inside brackets."""
    parts: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in s:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise UsageError(f"malformed SLURM host list {s!r}: ']' without '['")
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if depth != 0:
        raise UsageError(f"malformed SLURM host list {s!r}: unbalanced brackets")
    parts.append("".join(cur))
    return parts


def _expand_range(spec: str, whole: str) -> list[str]:
    out = []
    for item in spec.split(","):
        item = item.strip()
        if re.fullmatch(r"\d+", item):
            out.append(item)
            continue
        m = re.fullmatch(r"(\d+)-(\d+)", item)
        if not m:
            raise UsageError(f"malformed SLURM host list {whole!r}: bad range {item!r} (expected N or N-M)")
        lo_s, hi_s = m.groups()
        lo, hi = int(lo_s), int(hi_s)
        if lo > hi:
            raise UsageError(f"malformed SLURM host list {whole!r}: range {item!r} runs backwards")
        width = len(lo_s)  # zero padding follows the lower bound as written: node[08-10] -> node08 node09 node10
        out.extend(str(k).zfill(width) for k in range(lo, hi + 1))
    return out


def expand_hostlist(hostlist: str) -> list[str]:
    """Expand a SLURM host list (``node[01-03,07],login1``) into host names, in order.

    Several bracket groups in one name form their Cartesian product, leftmost slowest, as SLURM does.
    """
    hostlist = hostlist.strip()
    if not hostlist:
        raise UsageError("empty SLURM host list (SLURM_JOB_NODELIST is set but empty)")
    hosts: list[str] = []
    for item in _split_top_level(hostlist):
        item = item.strip()
        if not item:
            raise UsageError(f"malformed SLURM host list {hostlist!r}: empty entry")
        pieces: list[list[str]] = []
        pos = 0
        for m in _BRACKET.finditer(item):
            pieces.append([item[pos : m.start()]])
            pieces.append(_expand_range(m.group(1), hostlist))
            pos = m.end()
        pieces.append([item[pos:]])
        if any("[" in p[0] or "]" in p[0] for p in pieces if len(p) == 1):
            raise UsageError(f"malformed SLURM host list {hostlist!r}: nested or stray brackets")
        expanded = [""]
        for choices in pieces:
            expanded = [e + c for e in expanded for c in choices]
        hosts.extend(expanded)
    return hosts


def scontrol_hostnames(hostlist: str, scontrol: str) -> list[str]:
    """Expand ``hostlist`` with ``scontrol show hostnames``; raises on failure."""
    out = subprocess.run(
        [scontrol, "show", "hostnames", hostlist], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    hosts = [h.strip() for h in out.splitlines() if h.strip()]
    if not hosts:
        raise RuntimeError("scontrol printed no host names")
    return hosts


def first_host(hostlist: str, *, path: str | None = None) -> str:
    """First host of a SLURM host list: ``scontrol show hostnames`` when found on ``path``, else our parser."""
    scontrol = shutil.which("scontrol", path=path)
    if scontrol is not None:
        try:
            return scontrol_hostnames(hostlist, scontrol)[0]
        except (OSError, RuntimeError, subprocess.SubprocessError):
            pass  # a broken scontrol (e.g. no slurmctld from inside a container) must not stop the job
    return expand_hostlist(hostlist)[0]


def slurm_port(job_id: str) -> int:
    """A rendezvous port every task of a job derives alike from ``SLURM_JOB_ID``, distinct for nearby jobs."""
    try:
        jid = int(job_id.split("_")[0])  # array jobs look like 1234_5
    except ValueError:
        raise UsageError(f"SLURM_JOB_ID={job_id!r} is not a job number; set MASTER_PORT explicitly") from None
    return SLURM_PORT_BASE + jid % SLURM_PORT_SPAN


def launch_env(environ: Mapping[str, str], *, host_of: Callable[[str], str] | None = None) -> LaunchEnv:
    """Read rank, world size, local rank and rendezvous from ``environ`` (torchrun first, then SLURM, else single).

    Parameters
    ----------
    environ
        Usually ``os.environ``; tests pass fake environments.
    host_of
        Maps a SLURM host list to its first host (default :func:`first_host` with ``environ['PATH']``).
    """
    if "RANK" in environ or "WORLD_SIZE" in environ:
        world = _int(environ, "WORLD_SIZE", minimum=1)
        rank = _int(environ, "RANK")
        local = _int(environ, "LOCAL_RANK") if "LOCAL_RANK" in environ else rank
        _check_rank(rank, world, local, "torchrun variables")
        if world > 1 and not environ.get("MASTER_ADDR"):
            raise UsageError("MASTER_ADDR is not set; torchrun sets it, other launchers must export it")
        addr = environ.get("MASTER_ADDR") or "127.0.0.1"
        port = _port(environ) if world > 1 or "MASTER_PORT" in environ else DEFAULT_PORT
        return LaunchEnv(rank, world, local, addr, port, "torchrun")
    if "SLURM_PROCID" in environ:
        ntasks_var = "SLURM_NTASKS" if "SLURM_NTASKS" in environ else "SLURM_NPROCS"
        world = _int(environ, ntasks_var, minimum=1)
        rank = _int(environ, "SLURM_PROCID")
        local = _int(environ, "SLURM_LOCALID") if "SLURM_LOCALID" in environ else 0
        _check_rank(rank, world, local, "SLURM variables")
        if environ.get("MASTER_ADDR"):
            addr = environ["MASTER_ADDR"]
        else:
            nodelist = environ.get("SLURM_JOB_NODELIST") or environ.get("SLURM_NODELIST")
            if not nodelist:
                if world > 1:
                    raise UsageError("SLURM_JOB_NODELIST is not set; run under srun/sbatch or export MASTER_ADDR")
                addr = "127.0.0.1"
            else:
                addr = (host_of or (lambda s: first_host(s, path=environ.get("PATH"))))(nodelist)
        if "MASTER_PORT" in environ:
            port = _port(environ)
        elif "SLURM_JOB_ID" in environ:
            port = slurm_port(environ["SLURM_JOB_ID"])
        else:
            port = DEFAULT_PORT
        return LaunchEnv(rank, world, local, addr, port, "slurm")
    return LaunchEnv(0, 1, 0, "127.0.0.1", DEFAULT_PORT, "single")
