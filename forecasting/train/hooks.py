"""The trainer's rank-dependent choices.

Everything rank-dependent goes through :class:`TrainHooks` (ensemble members held here, gradient sync, metric
reduction, who writes files). This base class is the serial version (world size 1); a distributed run passes its
own subclass (:class:`sciml.forecasting.distributed.hooks.DistributedTrainHooks`), so the training loop itself
never branches on the rank.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from sciml.forecasting.tiles import Tile

if TYPE_CHECKING:
    from sciml.forecasting.distributed.context import CommGroup
    from sciml.forecasting.runtime import Runtime, RuntimeSection


class TrainHooks:
    """Rank-dependent choices of the trainer; this base class is the single-process (world size 1) version.

    A distributed run overrides these: which ensemble members and batch rows this rank holds, gradient
    synchronisation, averaging of logged scalars, and which rank writes checkpoints and logs.
    """

    rank: int = 0
    world_size: int = 1

    def is_writer(self) -> bool:
        """Whether this rank writes checkpoints, metrics and plots."""
        return True

    def batch_rows(self, indices: list[int]) -> list[int]:
        """This rank's share of a step's global batch of sample indices (serially all of them)."""
        return list(indices)

    def member_indices(self, members: int) -> list[int] | None:
        """Global indices of the ensemble members held here (``None``: all)."""
        return None

    def sync_gradients(self, model: torch.nn.Module) -> None:
        """Make gradients identical on ranks that share parameters (no-op serially)."""

    def reduce_mean(self, values: torch.Tensor) -> torch.Tensor:
        """Average a small tensor of scalars over the ranks that hold different data (identity serially)."""
        return values

    def barrier(self) -> None:
        """Wait for all ranks (no-op serially)."""

    def make_loss(self, loss: torch.nn.Module) -> torch.nn.Module:
        """Wrap or replace the serial loss (e.g. an ensemble-parallel CRPS); identity serially."""
        return loss

    def tile(self, nlat: int, nlon: int) -> Tile:
        """The lat x lon :class:`~sciml.forecasting.tiles.Tile` this rank reads (serially the whole globe)."""
        return Tile.full(nlat, nlon)

    def sphere_ops(self):
        """Spherical primitives for the model (``None``: serial torch-harmonics layers)."""
        return None

    def world_group(self) -> CommGroup | None:
        """The group a checkpoint's replicas are checked over (``None`` serially: nothing to compare)."""
        return None

    def runtime(self, section: RuntimeSection) -> Runtime:
        """The device and precision of this process: ``section`` resolved on this machine."""
        from sciml.forecasting.runtime import Runtime

        return Runtime.from_section(section)
