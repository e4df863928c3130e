r"""Pure layout math of the process mesh: no processes, no communication, unit-testable anywhere.

The world is a row-major mesh ``batch x ensemble x h x w`` with the spatial axes innermost, so that the ranks of
one model replica (one spatial tile set) are consecutive and stay inside a node:

.. math::

    r = ((b\,E + e)\,H + i)\,W + j, \qquad 0 \le b < B,\; 0 \le e < E,\; 0 \le i < H,\; 0 \le j < W.

``h`` splits latitude (polar direction) and ``w`` longitude (azimuth). Inside a spatial group the member index is
``i W + j`` (polar index ``= index // W``), the convention of ``torch_harmonics.distributed``. Tiles split an
extent ``n`` into ``p`` chunks that differ by at most one, the first ``n mod p`` chunks one larger, exactly as
``torch_harmonics.distributed.compute_split_shapes``; every distributed layer of torch-harmonics expects that split.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Literal

from sciml.errors import UsageError
from sciml.forecasting.tiles import Tile, split_bounds, split_sizes  # noqa: F401  (re-exported: one split rule)

Axis = Literal["batch", "ensemble", "h", "w"]
#: Mesh axes, outermost first.
AXES: tuple[str, ...] = ("batch", "ensemble", "h", "w")
#: Named process groups: the mesh axes each group varies over (row-major member order).
GROUP_AXES: dict[str, tuple[str, ...]] = {
    "h": ("h",),
    "w": ("w",),
    "spatial": ("h", "w"),
    "ensemble": ("ensemble",),
    "batch": ("batch",),
    "data": ("batch", "ensemble"),
    "world": AXES,
}
#: Order in which groups are created; identical on every rank (collective group creation requires it).
GROUP_ORDER: tuple[str, ...] = ("h", "w", "spatial", "ensemble", "batch", "data")


def tile(nlat: int, nlon: int, h: int, w: int, i: int, j: int) -> Tile:
    """Tile of spatial coordinates ``(i, j)`` on an ``h x w`` split of an ``nlat x nlon`` grid."""
    return Tile.from_split(nlat, nlon, h, w, i, j)


def split_evenly(total: int, parts: int, what: str) -> int:
    """``total // parts`` when ``parts`` divides ``total`` (global batch or ensemble size), else a UsageError."""
    if parts < 1 or total < 1 or total % parts:
        raise UsageError(
            f"{what} {total} cannot be split evenly over {parts} ranks; choose a {what} that is a multiple of {parts}"
        )
    return total // parts


@dataclass(frozen=True)
class MeshCoords:
    """A rank's coordinates in the mesh."""

    batch: int
    ensemble: int
    h: int
    w: int


@dataclass(frozen=True)
class MeshShape:
    """Extents of the process mesh ``batch x ensemble x h x w`` (row-major, spatial innermost)."""

    batch: int = 1
    ensemble: int = 1
    h: int = 1
    w: int = 1

    def __post_init__(self) -> None:
        for axis in AXES:
            if getattr(self, axis) < 1:
                raise UsageError(f"mesh extent {axis}={getattr(self, axis)} must be >= 1")

    @classmethod
    def from_world(cls, world_size: int, *, h: int = 1, w: int = 1, ensemble: int = 1) -> MeshShape:
        """Mesh for ``world_size`` ranks: the given spatial and ensemble splits, data (batch) parallel = the rest."""
        for name, v in (
            ("world size", world_size),
            ("h-parallel", h),
            ("w-parallel", w),
            ("ensemble-parallel", ensemble),
        ):
            if v < 1:
                raise UsageError(f"{name} must be >= 1, got {v}")
        model = h * w * ensemble
        if world_size % model:
            raise UsageError(
                f"world size {world_size} is not a multiple of h-parallel x w-parallel x ensemble-parallel "
                f"= {h} x {w} x {ensemble} = {model}; launch a multiple of {model} processes or change the splits"
            )
        return cls(batch=world_size // model, ensemble=ensemble, h=h, w=w)

    @property
    def size(self) -> int:
        """Number of ranks."""
        return self.batch * self.ensemble * self.h * self.w

    @property
    def spatial_size(self) -> int:
        return self.h * self.w

    def extent(self, axis: str) -> int:
        return getattr(self, axis)

    def coords(self, rank: int) -> MeshCoords:
        """Mesh coordinates of ``rank`` (row-major, ``w`` fastest)."""
        if not 0 <= rank < self.size:
            raise UsageError(f"rank {rank} is outside the mesh of {self.size} ranks")
        rest, j = divmod(rank, self.w)
        rest, i = divmod(rest, self.h)
        b, e = divmod(rest, self.ensemble)
        return MeshCoords(batch=b, ensemble=e, h=i, w=j)

    def rank(self, coords: MeshCoords) -> int:
        """Inverse of :meth:`coords`."""
        for axis in AXES:
            if not 0 <= getattr(coords, axis) < self.extent(axis):
                raise UsageError(f"coordinate {axis}={getattr(coords, axis)} is outside 0..{self.extent(axis) - 1}")
        return ((coords.batch * self.ensemble + coords.ensemble) * self.h + coords.h) * self.w + coords.w

    def group_ranks(self, name: str) -> list[tuple[int, ...]]:
        """All groups of kind ``name`` (see :data:`GROUP_AXES`), as sorted rank tuples, in canonical order.

        Groups are ordered by their fixed coordinates (row-major); members by the varying coordinates (row-major),
        which for the spatial group gives the ``i W + j`` order torch-harmonics assumes.
        """
        if name not in GROUP_AXES:
            raise UsageError(f"unknown process group {name!r}; use one of {sorted(GROUP_AXES)}")
        varying = GROUP_AXES[name]
        fixed = [a for a in AXES if a not in varying]
        groups = []
        for fixed_vals in itertools.product(*(range(self.extent(a)) for a in fixed)):
            members = []
            for var_vals in itertools.product(*(range(self.extent(a)) for a in varying)):
                c = dict(zip(fixed, fixed_vals, strict=True)) | dict(zip(varying, var_vals, strict=True))
                members.append(self.rank(MeshCoords(**c)))
            groups.append(tuple(members))
        return groups

    def group_of(self, name: str, rank: int) -> tuple[int, ...]:
        """The group of kind ``name`` that contains ``rank``."""
        for g in self.group_ranks(name):
            if rank in g:
                return g
        raise AssertionError("unreachable: every rank is in exactly one group of each kind")

    def tile(self, nlat: int, nlon: int, rank: int) -> Tile:
        """The latitude x longitude tile of ``rank`` on an ``nlat x nlon`` grid."""
        c = self.coords(rank)
        return tile(nlat, nlon, self.h, self.w, c.h, c.w)
