"""Process-group initialisation: one :class:`ParallelContext` per run, passed explicitly to whatever communicates.

:func:`init_parallel` reads the launcher's variables (:mod:`.env`), starts ``torch.distributed`` (NCCL when CUDA is
available, else gloo) with a collective timeout, builds the mesh groups ``h, w, spatial, ensemble, batch, data``
on every rank in the same order (:data:`.layout.GROUP_ORDER`), and hands the ``h`` and ``w`` groups to
``torch_harmonics.distributed.init``. A single process takes the same path with a one-rank group (an in-memory
store), so serial and distributed runs share every line of code.

torch-harmonics keeps its two groups in module globals; that is its design, not ours, and it means only one
context can drive ``torch_harmonics.distributed`` layers at a time (the last one initialised).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

import torch
import torch.distributed as dist

from sciml.errors import UsageError
from sciml.forecasting.runtime import parse_device_spec

from .env import LaunchEnv, launch_env
from .layout import GROUP_ORDER, MeshCoords, MeshShape, Tile, split_bounds, split_evenly

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ParallelConfig:
    """How to split the work: spatial tiles ``h x w``, ensemble ranks; data parallel takes the remaining ranks.

    Attributes
    ----------
    h, w : int
        Ranks along latitude and longitude (``--h-parallel``, ``--w-parallel``).
    ensemble : int
        Ranks sharing one ensemble (``--ensemble-parallel``); members are split evenly over them.
    timeout_s : float
        Collective timeout: a rank waiting longer for a dead or stuck peer raises instead of hanging.
    threads_per_rank : int
        ``torch.set_num_threads`` per rank (1: ranks on one machine must not oversubscribe its cores).
    backend : str or None
        ``"nccl"``, ``"gloo"`` or None for NCCL when CUDA is available, else gloo.
    """

    h: int = 1
    w: int = 1
    ensemble: int = 1
    timeout_s: float = 600.0
    threads_per_rank: int = 1
    backend: str | None = None

    def __post_init__(self) -> None:
        for name in ("h", "w", "ensemble", "threads_per_rank"):
            if getattr(self, name) < 1:
                raise UsageError(f"ParallelConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.timeout_s <= 0:
            raise UsageError(f"ParallelConfig.timeout_s must be > 0, got {self.timeout_s}")
        if self.backend not in (None, "nccl", "gloo"):
            raise UsageError(f"ParallelConfig.backend must be 'nccl', 'gloo' or None (auto), got {self.backend!r}")


@dataclass(frozen=True)
class CommGroup:
    """One process group of the mesh: its member ranks (global, ordered) and the torch handle."""

    name: str
    ranks: tuple[int, ...]
    handle: dist.ProcessGroup = field(repr=False)
    rank: int  # this process's index within ``ranks``
    device: torch.device = field(default=torch.device("cpu"), repr=False)  # where collective buffers must live

    @property
    def size(self) -> int:
        return len(self.ranks)


@dataclass(frozen=True)
class ParallelContext:
    """Everything a rank needs to know about the parallel layout; built by :func:`init_parallel`.

    Groups are explicit attributes (``ctx.spatial``, ``ctx.ensemble``, ...), never module globals of ours.
    """

    mesh: MeshShape
    rank: int
    coords: MeshCoords
    env: LaunchEnv
    backend: str
    device: torch.device
    groups: Mapping[str, CommGroup] = field(repr=False)
    owns_default_group: bool = field(repr=False, default=True)

    @property
    def world_size(self) -> int:
        return self.mesh.size

    def group(self, name: str) -> CommGroup:
        if name == "world":
            world = dist.group.WORLD
            assert world is not None  # the context exists only after init_process_group
            return CommGroup("world", tuple(range(self.world_size)), world, self.rank, self.device)
        return self.groups[name]

    @property
    def h(self) -> CommGroup:
        return self.groups["h"]

    @property
    def w(self) -> CommGroup:
        return self.groups["w"]

    @property
    def spatial(self) -> CommGroup:
        return self.groups["spatial"]

    @property
    def ensemble(self) -> CommGroup:
        return self.groups["ensemble"]

    @property
    def batch(self) -> CommGroup:
        return self.groups["batch"]

    @property
    def data(self) -> CommGroup:
        return self.groups["data"]

    def tile(self, nlat: int, nlon: int) -> Tile:
        """This rank's tile of an ``nlat x nlon`` grid."""
        return self.mesh.tile(nlat, nlon, self.rank)

    def member_indices(self, members: int, what: str = "ensemble size") -> list[int]:
        """Global indices of this ensemble rank's members: a contiguous block of ``members / ensemble``.

        ``what`` names the quantity in the error when ``members`` does not split evenly.
        """
        e_local = split_evenly(members, self.mesh.ensemble, what)
        first = self.coords.ensemble * e_local
        return list(range(first, first + e_local))

    def batch_rows(self, n: int, what: str = "global batch size") -> slice:
        """This batch rank's contiguous share of ``n`` batch rows (``n`` must split evenly)."""
        split_evenly(n, self.mesh.batch, what)
        return slice(*split_bounds(n, self.mesh.batch, self.coords.batch))

    def close(self) -> None:
        """Release torch-harmonics' groups and, if this context started it, the default process group."""
        import torch_harmonics.distributed as thd

        if thd.is_initialized():
            # thd.finalize destroys the h/w groups it was given; then drop ours and the default group.
            thd.finalize()
        if self.owns_default_group and dist.is_initialized():
            dist.destroy_process_group()


def choose_backend(requested: str | None) -> str:
    """``requested`` or, when None, NCCL if CUDA is available else gloo."""
    if requested is not None:
        if requested == "nccl" and not torch.cuda.is_available():
            raise UsageError("backend 'nccl' needs CUDA GPUs; use 'gloo' (or leave the backend unset) on CPU")
        return requested
    return "nccl" if torch.cuda.is_available() else "gloo"


def build_groups(mesh: MeshShape, rank: int, timeout: timedelta, device: torch.device) -> dict[str, CommGroup]:
    """Create every mesh group on this rank, in :data:`GROUP_ORDER` and canonical group order.

    ``dist.new_group`` is collective over the whole world, so every rank must create every group (also those it
    is not a member of) in the same order; it keeps the handle of the group that contains it.
    """
    mine: dict[str, CommGroup] = {}
    for name in GROUP_ORDER:
        for ranks in mesh.group_ranks(name):
            handle = dist.new_group(list(ranks), timeout=timeout)
            if rank in ranks:
                assert isinstance(handle, dist.ProcessGroup)  # a member of the group gets its handle
                mine[name] = CommGroup(name, ranks, handle, ranks.index(rank), device)
    return mine


def init_parallel(
    config: ParallelConfig = ParallelConfig(), environ: Mapping[str, str] | None = None
) -> ParallelContext:
    """Start (or join) ``torch.distributed`` and build the mesh groups; also the single-process path.

    Parameters
    ----------
    config
        Spatial / ensemble splits, timeout, threads, backend.
    environ
        Launcher variables (default ``os.environ``), see :func:`.env.launch_env`.

    Returns
    -------
    ParallelContext
        Call :meth:`ParallelContext.close` when done.
    """
    env = launch_env(os.environ if environ is None else environ)
    mesh = MeshShape.from_world(env.world_size, h=config.h, w=config.w, ensemble=config.ensemble)
    torch.set_num_threads(config.threads_per_rank)
    backend = choose_backend(config.backend)
    if backend == "nccl":
        device = torch.device("cuda", env.local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    timeout = timedelta(seconds=config.timeout_s)
    owns = not dist.is_initialized()
    if owns:
        if env.world_size == 1:
            # same code path without a network rendezvous: a one-rank group on an in-process store
            dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1, timeout=timeout)
        else:
            dist.init_process_group(
                backend, init_method=env.init_method, rank=env.rank, world_size=env.world_size, timeout=timeout
            )
    elif (dist.get_rank(), dist.get_world_size()) != (env.rank, env.world_size):
        raise UsageError(
            f"torch.distributed is already initialised as rank {dist.get_rank()}/{dist.get_world_size()}, "
            f"but the launcher says {env.rank}/{env.world_size}"
        )
    groups = build_groups(mesh, env.rank, timeout, device)
    import torch_harmonics.distributed as thd  # here, not at import: ParallelConfig alone must not cost its start-up

    # torch-harmonics treats a registered group as a split direction: pass None where the extent is 1.
    thd.init(groups["h"].handle if mesh.h > 1 else None, groups["w"].handle if mesh.w > 1 else None)
    ctx = ParallelContext(
        mesh=mesh,
        rank=env.rank,
        coords=mesh.coords(env.rank),
        env=env,
        backend=backend,
        device=device,
        groups=groups,
        owns_default_group=owns,
    )
    if env.rank == 0:
        log.info(
            "parallel mesh batch=%d ensemble=%d h=%d w=%d on %s", mesh.batch, mesh.ensemble, mesh.h, mesh.w, backend
        )
    return ctx


def check_device(spec: str, ctx: ParallelContext) -> None:
    """``--device`` must name the kind of device the backend communicates on (``auto`` follows the context).

    The answer is the same on every rank (it depends on the backend and world size only), so all ranks stop
    together. A GPU index is refused on more than one rank: each rank uses ``cuda:LOCAL_RANK``.
    """
    kind, index = parse_device_spec(spec)
    if kind == "auto":
        return
    if kind != ctx.device.type:
        fix = "--device cuda (each rank uses cuda:LOCAL_RANK)" if ctx.device.type == "cuda" else "--device cpu"
        raise UsageError(
            f"--device {spec}, but this parallel run communicates with {ctx.backend} on {ctx.device.type}; use "
            f"{fix} or auto"
        )
    if index is not None and (ctx.world_size > 1 or index != ctx.device.index):
        raise UsageError(f"--device {spec} in a parallel run: each rank uses cuda:LOCAL_RANK; pass --device cuda")
