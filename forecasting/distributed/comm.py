r"""Tile bookkeeping and gradient synchronisation built from ``torch.distributed`` collectives.

Nothing here is a new collective: tiles are gathered with ``dist.all_gather`` (padded to the largest tile, since
gloo needs equal shapes), losses and gradients are summed with ``dist.all_reduce``.

Gradient rule (shared, replicated weights). With the global loss
:math:`L = \frac{1}{B}\sum_{b} L_b` over the data-parallel ranks and each :math:`L_b` computed by the spatial
ranks of one replica from disjoint pieces of the activations,

.. math::

    \nabla_\theta L = \frac{1}{|\mathrm{data}|} \sum_{d \in \mathrm{data}} \sum_{s \in \mathrm{spatial}}
    \nabla_\theta \ell_{d,s},

where :math:`\ell_{d,s}` is the part of rank :math:`(d, s)`'s loss that its own tile contributes: a SUM over
spatial ranks, then an AVERAGE over data ranks. Losses that couple ensemble members across ranks (the CRPS) scale
their local gradient so that the average over the ensemble ranks is exact (see :mod:`.crps`).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.distributed as dist

from .context import CommGroup, ParallelContext
from .layout import Tile


def local_tile(x: torch.Tensor, tile: Tile) -> torch.Tensor:
    """This rank's tile of a global field (the last two dimensions are latitude, longitude); a contiguous copy."""
    lat, lon = tile.slices
    return x[..., lat, lon].contiguous()


def gather_tiles(x_local: torch.Tensor, ctx: ParallelContext, nlat: int, nlon: int) -> torch.Tensor:
    """Assemble the global ``[..., nlat, nlon]`` field on every rank of the spatial group (not differentiable).

    Each rank's tile is zero-padded to the largest tile shape, exchanged with ``dist.all_gather`` over the spatial
    group and cut back to its true extent using the layout math.
    """
    group = ctx.spatial
    mine = ctx.tile(nlat, nlon)
    if tuple(x_local.shape[-2:]) != mine.shape:
        raise ValueError(f"local tile has shape {tuple(x_local.shape[-2:])}, expected {mine.shape} for rank {ctx.rank}")
    if group.size == 1:
        return x_local.detach().clone()
    tiles = [ctx.mesh.tile(nlat, nlon, r) for r in group.ranks]
    hmax = max(t.shape[0] for t in tiles)
    wmax = max(t.shape[1] for t in tiles)
    padded = x_local.detach().new_zeros((*x_local.shape[:-2], hmax, wmax))
    padded[..., : mine.shape[0], : mine.shape[1]] = x_local.detach()
    received = [torch.empty_like(padded) for _ in tiles]
    dist.all_gather(received, padded, group=group.handle)
    out = x_local.new_empty((*x_local.shape[:-2], nlat, nlon))
    for t, piece in zip(tiles, received, strict=True):
        lat, lon = t.slices
        out[..., lat, lon] = piece[..., : t.shape[0], : t.shape[1]]
    return out


class _SumForward(torch.autograd.Function):
    """Forward: all-reduce SUM over ``group``; backward: the incoming gradient times ``grad_scale``, unreduced."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, handle: dist.ProcessGroup, size: int, grad_scale: float) -> torch.Tensor:
        ctx.grad_scale = grad_scale
        y = x.detach().clone()
        if size > 1:
            dist.all_reduce(y, group=handle)
        return y

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        return g * ctx.grad_scale, None, None, None


class _AllToAll(torch.autograd.Function):
    """``dist.all_to_all`` of equally shaped chunks; its adjoint is the same exchange of the gradients."""

    @staticmethod
    def forward(ctx, handle: dist.ProcessGroup, *chunks: torch.Tensor) -> tuple[torch.Tensor, ...]:
        ctx.handle = handle
        recv = [torch.empty_like(c) for c in chunks]
        dist.all_to_all(recv, [c.contiguous() for c in chunks], group=handle)
        return tuple(recv)

    @staticmethod
    def backward(ctx, *grads: torch.Tensor):
        recv = [torch.empty_like(g) for g in grads]
        dist.all_to_all(recv, [g.contiguous() for g in grads], group=ctx.handle)
        return (None, *recv)


def all_to_all(chunks: list[torch.Tensor], group: CommGroup) -> list[torch.Tensor]:
    """Differentiable all-to-all over ``group``: chunk ``k`` goes to member ``k``; all chunks share one shape.

    A thin autograd wrapper around ``dist.all_to_all`` (``torch.distributed.nn.functional.all_to_all`` emulates it
    on gloo with ``scatter`` calls that take group ranks for global ranks, which breaks on subgroups).
    """
    if len(chunks) != group.size:
        raise ValueError(f"all_to_all needs {group.size} chunks for group {group.name}, got {len(chunks)}")
    if group.size == 1:
        return list(chunks)
    if len({tuple(c.shape) for c in chunks}) != 1:
        raise ValueError("all_to_all chunks must share one shape (pad them; gloo needs equal shapes)")
    return list(_AllToAll.apply(group.handle, *chunks))


def sum_partials(partial: torch.Tensor, group: CommGroup, grad_scale: float = 1.0) -> torch.Tensor:
    r"""Value: :math:`\sum_{r \in \mathrm{group}} p_r` on every rank; gradient: ``grad_scale`` times the local one.

    Each rank back-propagates only its own partial, so after a SUM of parameter gradients over ``group`` the
    result is the gradient of the total (``grad_scale = 1``); with an AVERAGE over ``group`` use
    ``grad_scale = group.size``.
    """
    return _SumForward.apply(partial, group.handle, group.size, float(grad_scale))


def _grads(params: Iterable[torch.nn.Parameter]) -> list[torch.Tensor]:
    return [p.grad for p in params if p.grad is not None]


def _all_reduce_flat(grads: list[torch.Tensor], group: CommGroup, scale: float) -> None:
    """One bucketed all-reduce SUM of ``grads`` over ``group``, then multiply by ``scale``, in place."""
    if not grads or (group.size == 1 and scale == 1.0):
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    if group.size > 1:
        dist.all_reduce(flat, group=group.handle)
    if scale != 1.0:
        flat.mul_(scale)
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset : offset + n].view_as(g))
        offset += n


def sync_gradients(params: Iterable[torch.nn.Parameter], ctx: ParallelContext) -> None:
    """SUM gradients of replicated weights over the spatial group, then AVERAGE them over the data group.

    Every weight of the model is replicated on every rank (spectral weights included; each rank uses its slice of
    degrees), so this one rule applies to all parameters. Gradients are flattened into one buffer per group.
    """
    grads = _grads(params)
    _all_reduce_flat(grads, ctx.spatial, 1.0)
    _all_reduce_flat(grads, ctx.data, 1.0 / ctx.data.size)


def max_replica_difference(tensors: Iterable[torch.Tensor], group: CommGroup) -> float:
    r"""Largest :math:`\max_r x_r - \min_r x_r` over the entries of ``tensors`` across ``group`` (0: replicas agree).

    Tensor by tensor in its own dtype, so the extra memory is two copies of the largest tensor, not of the model.
    """
    if group.size == 1:
        return 0.0
    worst = 0.0
    for t in tensors:
        if t.numel() == 0:
            continue
        hi, lo = t.detach().clone(), t.detach().clone()
        dist.all_reduce(hi, op=dist.ReduceOp.MAX, group=group.handle)
        dist.all_reduce(lo, op=dist.ReduceOp.MIN, group=group.handle)
        worst = max(worst, float((hi.double() - lo.double()).abs().max()))
    return worst


def all_max(value: float, group: CommGroup) -> float:
    """Maximum of a scalar over ``group`` (every rank gets it): the common verdict of a check."""
    t = torch.tensor([float(value)], dtype=torch.float64, device=group.device)
    if group.size > 1:
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=group.handle)
    return float(t.item())
