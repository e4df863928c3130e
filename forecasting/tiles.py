r"""Latitude x longitude tiles of a grid and the one rule that splits an extent over ranks.

The rule is torch-harmonics' ``compute_split_shapes`` (balanced chunks, the first ``n mod p`` one larger),

.. math::

    n_k = \lfloor n/p \rfloor + [k < n \bmod p], \qquad k = 0, \dots, p - 1,

so a tile is exactly the block of rows and columns a ``torch_harmonics.distributed`` layer expects on that rank.
The data layer reads tiles (:class:`~sciml.forecasting.data.ForecastDataset`), the distributed layer computes on
them; both use this :class:`Tile`.
"""

from __future__ import annotations

from dataclasses import dataclass

from sciml.errors import UsageError


def split_sizes(n: int, parts: int) -> list[int]:
    """Chunk sizes of an extent ``n`` over ``parts`` ranks (torch-harmonics' rule); every chunk non-empty."""
    from torch_harmonics.distributed import compute_split_shapes

    if parts < 1:
        raise UsageError(f"cannot split into {parts} parts; the number of ranks must be >= 1")
    if n < parts:
        raise UsageError(f"cannot split an extent of {n} over {parts} ranks (every tile needs >= 1 point); use fewer")
    return [int(s) for s in compute_split_shapes(n, parts)]


def split_bounds(n: int, parts: int, index: int) -> tuple[int, int]:
    """``(start, stop)`` of chunk ``index`` of :func:`split_sizes` ``(n, parts)``."""
    sizes = split_sizes(n, parts)
    if not 0 <= index < parts:
        raise UsageError(f"chunk index {index} is outside 0..{parts - 1}")
    start = sum(sizes[:index])
    return start, start + sizes[index]


@dataclass(frozen=True)
class Tile:
    """A latitude x longitude block of an ``nlat x nlon`` grid: half-open index ranges ``lat``, ``lon``."""

    lat: tuple[int, int]
    lon: tuple[int, int]

    @classmethod
    def full(cls, nlat: int, nlon: int) -> Tile:
        """The whole grid."""
        return cls((0, nlat), (0, nlon))

    @classmethod
    def from_split(cls, nlat: int, nlon: int, h: int, w: int, i: int, j: int) -> Tile:
        """The tile of polar rank ``i`` of ``h`` and azimuth rank ``j`` of ``w``."""
        if not (0 <= i < h and 0 <= j < w):
            raise UsageError(f"tile rank ({i}, {j}) outside the {h}x{w} decomposition")
        if h > nlat or w > nlon:
            raise UsageError(f"cannot split a {nlat}x{nlon} grid into {h}x{w} tiles")
        return cls(split_bounds(nlat, h, i), split_bounds(nlon, w, j))

    @classmethod
    def from_slices(cls, lat: slice, lon: slice, nlat: int, nlon: int) -> Tile:
        """Tile from Python slices (step 1) over an ``nlat x nlon`` grid."""
        if lat.step not in (None, 1) or lon.step not in (None, 1):
            raise UsageError("tile slices must be contiguous (step 1)")
        a0, a1, _ = lat.indices(nlat)
        b0, b1, _ = lon.indices(nlon)
        tile = cls((a0, a1), (b0, b1))
        tile.check(nlat, nlon)
        return tile

    @property
    def shape(self) -> tuple[int, int]:
        """Local ``(nlat, nlon)``."""
        return self.lat[1] - self.lat[0], self.lon[1] - self.lon[0]

    @property
    def slices(self) -> tuple[slice, slice]:
        """``(lat_slice, lon_slice)`` for indexing the two trailing dimensions of a global field."""
        return slice(*self.lat), slice(*self.lon)

    def check(self, nlat: int, nlon: int) -> None:
        """Raise unless the tile is non-empty and inside the ``nlat x nlon`` grid."""
        if not (0 <= self.lat[0] < self.lat[1] <= nlat and 0 <= self.lon[0] < self.lon[1] <= nlon):
            raise UsageError(f"tile {self} is empty or outside the {nlat}x{nlon} grid")
