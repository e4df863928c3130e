"""Distributed forecasting: a ``batch x ensemble x h x w`` process mesh on ``torch.distributed``.

- :mod:`.layout`: pure mesh and tile math (rank <-> coordinates, group member lists, uneven tile splits);
- :mod:`.env`: rank / world size / rendezvous from torchrun or SLURM variables;
- :mod:`.context`: :func:`init_parallel` -> :class:`ParallelContext` (groups passed explicitly);
- :mod:`.ops`: distributed twins of the model's spherical layers (``torch_harmonics.distributed``);
- :mod:`.comm`: tile gather, loss partial sums, gradient synchronisation;
- :mod:`.crps`: ensemble-parallel CRPS losses (all-to-all over the ensemble group) and :func:`.crps.distributed_loss`;
- :mod:`.noise`: noise on tiles (checkpoints load at any layout: :mod:`sciml.forecasting.checkpoint`);
- :mod:`.hooks`, :mod:`.trainer`: the trainer on the mesh (``sciml forecast train --h-parallel``; flags in
  :mod:`sciml.forecasting.cli.parallel`);
- :mod:`.spawn`: run a function on N local ranks (tests, benchmarks).
"""

from sciml.lazy import lazy_exports

# Names resolved on first use, so that importing this package (e.g. for its CLI flags) does not import torch.
__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "context": ("CommGroup", "ParallelConfig", "ParallelContext", "init_parallel"),
        "layout": ("MeshCoords", "MeshShape", "Tile", "split_sizes"),
    },
)
