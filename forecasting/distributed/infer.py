r"""``sciml forecast infer`` on the ``batch x ensemble x h x w`` mesh: the serial inference loop, tiled.

:func:`sciml.forecasting.infer.run_inference` asks its :class:`~sciml.forecasting.infer.InferHooks` what to compute;
:class:`DistributedInferHooks` answers for one rank of a :class:`.context.ParallelContext`:

* the model is built with :class:`.ops.DistributedSphereOps` from the serial checkpoint (its weights are replicated,
  so any training layout loads), and the initial conditions, static fields and time features are read for this
  rank's latitude x longitude tile only;
* ensemble ranks hold contiguous blocks of ``M / E`` members, batch ranks contiguous blocks of ``B / D`` initial
  times (``M``: ``--members``, ``B``: number of ``--init`` times; both must divide evenly);
* member :math:`e`'s noise comes from its own stream, seeded by its *global* index (:class:`.noise.TiledEnsembleNoise`),
  and is mapped to the tile with the distributed inverse SHT, so it is the serial run's noise on any layout;
* after every lead step the denormalised tiles ``[M/E, B/D, C, h, w]`` are gathered to rank 0
  (``dist.gather``, tiles zero-padded to the largest one since gloo needs equal shapes) and written there in the
  serial WeatherBench 2 layout, so memory does not grow with the lead and the store is the serial store.

Every rank computes on its context's device (``ctx.device``: ``cuda:LOCAL_RANK`` under NCCL, the CPU under gloo):
the network, state, noise grid fields and the tiles handed to ``dist.gather`` live there, so NCCL never sees a
CPU tensor; only rank 0 copies the gathered lead to the host to write it. ``InferConfig.device`` must agree with
the backend (``cpu`` with gloo, ``cuda`` with NCCL); ``auto`` follows the context.

Checks that can fail on one rank only (NaN initial conditions on a tile, a non-finite forecast, rank 0's writes of
each lead and of the store's metadata) are agreed over the world (MAX all-reduce) so that every rank raises
together instead of leaving the others waiting or reporting success for a store that was removed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from sciml.forecasting.infer import InferConfig, InferHooks, run_inference
from sciml.forecasting.runtime import resolve_device
from sciml.progress import Progress

from .comm import all_max
from .context import ParallelContext, check_device
from .layout import Tile
from .noise import TiledEnsembleNoise
from .ops import DistributedSphereOps


class DistributedInferHooks(InferHooks):
    """:class:`~sciml.forecasting.infer.InferHooks` of one rank of ``ctx``'s mesh (see the module docstring)."""

    def __init__(self, ctx: ParallelContext) -> None:
        super().__init__(ctx.device)
        self.ctx = ctx

    def sphere_ops(self) -> DistributedSphereOps:
        return DistributedSphereOps(self.ctx)

    def tile(self, nlat: int, nlon: int) -> Tile:
        return self.ctx.tile(nlat, nlon)

    def rows(self, n_inits: int) -> slice:
        return self.ctx.batch_rows(n_inits, "number of --init times")

    def member_indices(self, members: int) -> list[int]:
        return self.ctx.member_indices(members, "--members")

    def noise(self, process: Any, members: int, seed: int, centered: bool, n_inits: int) -> TiledEnsembleNoise:
        return TiledEnsembleNoise(process, members, n_inits, seed, self.ctx, centered=centered, device=self.ctx.device)

    def is_writer(self) -> bool:
        return self.ctx.rank == 0

    def any_true(self, flag: bool) -> bool:
        return all_max(1.0 if flag else 0.0, self.ctx.group("world")) > 0.0

    def gather(self, fields: torch.Tensor, members: int, n_inits: int, nlat: int, nlon: int) -> np.ndarray | None:
        """Gather ``[M/E, B/D, C, h, w]`` tiles of every rank into ``[B, M, C, nlat, nlon]`` float32 on rank 0.

        Ranks of other batch and ensemble coordinates contribute their rows and members; every rank's block goes
        to the place its mesh coordinates and tile give it (:meth:`.layout.MeshShape.tile`).
        """
        ctx, mesh = self.ctx, self.ctx.mesh
        e_r, b_r = fields.shape[:2]
        tiles = [mesh.tile(nlat, nlon, r) for r in range(mesh.size)]
        hmax = max(t.shape[0] for t in tiles)
        wmax = max(t.shape[1] for t in tiles)
        padded = fields.new_zeros((*fields.shape[:-2], hmax, wmax), dtype=torch.float32, device=ctx.device)
        padded[..., : fields.shape[-2], : fields.shape[-1]] = fields
        received: list[torch.Tensor] | None
        if mesh.size == 1:
            received = [padded]
        else:
            received = [torch.empty_like(padded) for _ in tiles] if ctx.rank == 0 else None
            dist.gather(padded, received, dst=0, group=ctx.group("world").handle)
        if ctx.rank != 0:
            return None
        assert received is not None  # rank 0 gathered every tile
        out = np.empty((n_inits, members, fields.shape[2], nlat, nlon), dtype=np.float32)
        for r, (t, piece) in enumerate(zip(tiles, received, strict=True)):
            c = mesh.coords(r)
            (lat, lon), (h, w) = t.slices, t.shape
            block = piece[..., :h, :w].cpu().numpy().transpose(1, 0, 2, 3, 4)  # [B_r, E_r, C, h, w]
            out[c.batch * b_r : (c.batch + 1) * b_r, c.ensemble * e_r : (c.ensemble + 1) * e_r, :, lat, lon] = block
        return out


def run_distributed_inference(
    cfg: InferConfig, ctx: ParallelContext, progress: Progress | None = None
) -> dict[str, Any]:
    """:func:`~sciml.forecasting.infer.run_inference` on this process's rank of ``ctx``'s mesh.

    Runs the serial inference loop with :class:`DistributedInferHooks`. Rank 0 writes ``cfg.out`` (the serial
    store) and shows ``progress``; the summary has ``writer`` (whether this rank wrote) and ``layout``. The caller
    owns ``ctx`` (``sciml forecast infer`` opens it with :func:`sciml.forecasting.cli.parallel.parallel_context`).
    """
    resolve_device(cfg.device)  # CUDA asked for on a machine without it: the serial run's one line, on every rank
    check_device(cfg.device, ctx)
    res = run_inference(cfg, progress if ctx.rank == 0 else None, hooks=DistributedInferHooks(ctx))
    m = ctx.mesh
    return {**res, "writer": ctx.rank == 0, "layout": {"batch": m.batch, "ensemble": m.ensemble, "h": m.h, "w": m.w}}
