"""Distributed forecasting: a ``batch x ensemble x h x w`` process mesh on ``torch.distributed``.

- :mod:`.layout`: pure mesh and tile math (rank <-> coordinates, group member lists, uneven tile splits);
- :mod:`.env`: rank / world size / rendezvous from torchrun or SLURM variables;
- :mod:`.context`: :func:`init_parallel` -> :class:`ParallelContext` (groups passed explicitly);
- :mod:`.ops`: distributed twins of the model's spherical layers (``torch_harmonics.distributed``);
- :mod:`.comm`: tile gather, loss partial sums, gradient synchronisation;
- :mod:`.crps`: ensemble-parallel CRPS losses (all-to-all over the ensemble group);
- :mod:`.spawn`: run a function on N local ranks (tests, benchmarks).
"""

from .context import CommGroup, ParallelConfig, ParallelContext, init_parallel
from .layout import MeshCoords, MeshShape, Tile, split_sizes

__all__ = [
    "CommGroup",
    "MeshCoords",
    "MeshShape",
    "ParallelConfig",
    "ParallelContext",
    "Tile",
    "init_parallel",
    "split_sizes",
]
