"""The trainer's rank-dependent choices (:class:`sciml.forecasting.train.TrainHooks`) for a parallel context.

The training loop never branches on the rank; it asks its hooks. This subclass answers for a
``batch x ensemble x h x w`` mesh: rank 0 writes, members and batch rows are split evenly, the loss becomes its
ensemble-parallel tiled twin, gradients are synchronised by :func:`.comm.sync_gradients`, scalars are averaged
over the world. It also provides what a tiled run needs beyond that interface: the distributed ``SphereOps`` for
the model, this rank's data tile and its share of each global batch.

Use them with :class:`.trainer.TiledTrainer` (what ``sciml forecast train`` does under a launcher). The plain
``Trainer`` with these hooks trains ensemble-parallel correctly, but its checkpoints hold only rank 0's member
noise streams, so such a run cannot resume at another ensemble split.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.distributed as dist

from sciml.forecasting.train import TrainHooks

from .comm import sync_gradients
from .context import CommGroup, ParallelContext, check_device
from .crps import distributed_loss
from .layout import Tile
from .ops import DistributedSphereOps

if TYPE_CHECKING:
    from sciml.forecasting.runtime import Runtime, RuntimeSection


class DistributedTrainHooks(TrainHooks):
    """:class:`TrainHooks` of one rank of ``ctx``'s mesh."""

    def __init__(self, ctx: ParallelContext) -> None:
        self.ctx = ctx
        self.rank = ctx.rank
        self.world_size = ctx.world_size

    def is_writer(self) -> bool:
        return self.ctx.rank == 0

    def member_indices(self, members: int) -> list[int]:
        """Global indices of this ensemble rank's members: a contiguous block of ``members / ensemble`` ranks."""
        return self.ctx.member_indices(members)

    def batch_rows(self, indices: list[int]) -> list[int]:
        """This batch rank's contiguous share of a global batch (sample indices in global order)."""
        return list(indices[self.ctx.batch_rows(len(indices))])

    def sync_gradients(self, model: torch.nn.Module) -> None:
        sync_gradients(model.parameters(), self.ctx)

    def reduce_mean(self, values: torch.Tensor) -> torch.Tensor:
        """World average (the losses of :mod:`.crps` are already global, so their average is themselves)."""
        if self.ctx.world_size == 1:
            return values
        out = values.detach().to(self.ctx.device, copy=True)
        dist.all_reduce(out, group=self.ctx.group("world").handle)
        return (out / self.ctx.world_size).to(values.device)

    def runtime(self, section: RuntimeSection) -> Runtime:
        """The parallel context's device (``cuda:LOCAL_RANK`` under NCCL, else CPU) with the section's precision;
        a ``runtime.device`` of another kind, or a GPU index on several ranks, is refused (:func:`check_device`)."""
        from sciml.forecasting.runtime import Runtime

        check_device(section.device, self.ctx)
        return Runtime(self.ctx.device, section.precision, section.checkpointing, section.compile)

    def world_group(self) -> CommGroup:
        return self.ctx.group("world")

    def barrier(self) -> None:
        if self.ctx.world_size > 1:
            dist.barrier(group=self.ctx.group("world").handle)

    def make_loss(self, loss: torch.nn.Module) -> torch.nn.Module:
        return distributed_loss(loss, self.ctx)

    def sphere_ops(self) -> DistributedSphereOps:
        """``SphereOps`` for building the model on this rank's tiles."""
        return DistributedSphereOps(self.ctx)

    def tile(self, nlat: int, nlon: int) -> Tile:
        """This rank's tile (``ForecastDataset(cfg, tile=...)`` reads only it)."""
        return self.ctx.tile(nlat, nlon)
