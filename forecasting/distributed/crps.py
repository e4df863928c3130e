r"""Ensemble-parallel CRPS: the members of one ensemble live on different ranks, the score needs all of them per point.

A rank of the ensemble group holds :math:`E_r = E/P` members of every point of its tile. One all-to-all over the
ensemble group (``dist.all_to_all`` with its adjoint, :func:`.comm.all_to_all`) turns that into all :math:`E`
members of :math:`1/P` of the points; the pointwise CRPS (the serial kernel of :mod:`sciml.forecasting.losses`)
is evaluated there, weighted, and the partial sums are added over the ensemble and spatial groups. The full field
of all members is never assembled on one rank.

Value and gradient. Every rank returns the *global* loss (the serial value for the whole batch). Each rank
back-propagates only its own partial sum, scaled by the ensemble group size :math:`P`, so that after
:func:`.comm.sync_gradients` (SUM over spatial, AVERAGE over data = batch x ensemble ranks)

.. math::

    \frac{1}{B_r P} \sum_{b} \sum_{e} P\, \nabla_\theta \ell_{b,e} = \frac{1}{B_r}\sum_b \nabla_\theta L_b,

the gradient of the serial loss :math:`L = \frac1{B_r}\sum_b L_b` (equal local batches :math:`B/B_r`).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch_harmonics.distributed as thd

from sciml.errors import UsageError
from sciml.forecasting.losses import (
    ChannelSHT,
    CombinedLoss,
    CRPSKernel,
    GridCRPSLoss,
    SpectralCRPSLoss,
    coefficient_magnitudes,
    crps_ensemble,
    mode_weights,
    weighted_modes,
)

from .comm import all_to_all, sum_partials
from .context import CommGroup, ParallelContext
from .layout import split_bounds
from .ops import local_degree_slice, local_order_slice


def members_to_points(x: torch.Tensor, group: CommGroup) -> tuple[torch.Tensor, int, int]:
    """All-to-all ``[E_r, M]`` (members split) -> ``[E, c]`` (points split), differentiable.

    ``M`` is padded with zeros to ``P c``; rank ``k`` of the group receives points ``[k c, (k+1) c)`` of every
    member, members ordered by group rank (global member index ``k' E_r + j``). Returns the tensor, the chunk
    length ``c`` and this rank's first point index.
    """
    p = group.size
    n_points = x.shape[1]
    chunk = -(-n_points // p)
    if p == 1:
        return x, chunk, 0
    pad = p * chunk - n_points
    if pad:
        x = torch.cat([x, x.new_zeros(x.shape[0], pad)], dim=1)
    parts = all_to_all([c.contiguous() for c in x.split(chunk, dim=1)], group)
    return torch.cat(parts, dim=0), chunk, group.rank * chunk


def ensemble_crps_partial(
    forecast: torch.Tensor, target: torch.Tensor, kernel: CRPSKernel, group: CommGroup
) -> torch.Tensor:
    r"""Pointwise CRPS of the members spread over ``group``, on this rank's share of the points only.

    ``forecast`` is ``[E_r, *S]`` (local members), ``target`` ``[*S]`` (same on every rank of the group). Returns
    ``[*S]`` holding :math:`\mathrm{CRPS}` at the points this rank scored and 0 elsewhere; the sum over the group
    is the full pointwise CRPS field.
    """
    shape = target.shape
    if tuple(forecast.shape[1:]) != tuple(shape):
        raise UsageError(f"forecast {tuple(forecast.shape)} and target {tuple(shape)} do not match ([E, *S] vs [*S])")
    n_points = target.numel()
    members, chunk, start = members_to_points(forecast.reshape(forecast.shape[0], n_points), group)
    stop = min(start + chunk, n_points)
    if stop <= start:  # more ranks than points: nothing to score here
        return forecast.sum(0) * 0.0
    mine = members[:, : stop - start]
    crps = crps_ensemble(mine, target.reshape(-1)[start:stop], kernel, ensemble_dim=0)
    full = torch.cat([crps.new_zeros(start), crps, crps.new_zeros(n_points - stop)])
    return full.reshape(shape)


def _global_mean_over_batch(partial: torch.Tensor, ctx: ParallelContext) -> torch.Tensor:
    """Sum the partials over ensemble (gradient x P) and spatial ranks, average over batch ranks."""
    out = sum_partials(partial, ctx.ensemble, grad_scale=ctx.ensemble.size)
    out = sum_partials(out, ctx.spatial)
    return sum_partials(out / ctx.batch.size, ctx.batch, grad_scale=ctx.batch.size)


def _channel_sum(per_channel: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    if weights is None:
        return per_channel.mean()
    if weights.numel() != per_channel.numel():
        raise UsageError(f"{weights.numel()} channel weights for {per_channel.numel()} channels")
    return (per_channel * weights.to(per_channel.dtype)).sum()


def _clone(weights: torch.Tensor | None) -> torch.Tensor | None:
    """A rank's own copy of the serial loss's (already validated) channel weights."""
    return None if weights is None else weights.clone()


class DistributedGridCRPSLoss(nn.Module):
    r"""Twin of ``GridCRPSLoss`` on tiles with the ensemble spread over ranks.

    .. math::

        L = \frac1B \sum_b \sum_c w_c \sum_{x} q_x\, \mathrm{CRPS}_\alpha(\{u^e_{bc}(x)\}_{e=1}^{E}, u^*_{bc}(x)),

    ``forecast`` ``[E_r, B_r, C, h, w]`` (local members, local batch, tile), ``target`` ``[B_r, C, h, w]``.
    The value is the global loss on every rank (see the module docstring for the gradient). Built from the serial
    loss (its kernel, channel weights and this rank's rows of its quadrature), so it computes that loss exactly.
    """

    # buffers (registered in __init__), declared for type checkers
    quad: torch.Tensor
    channel_weights: torch.Tensor | None

    def __init__(self, serial: GridCRPSLoss, ctx: ParallelContext) -> None:
        super().__init__()
        self.kernel, self.ctx = serial.kernel, ctx
        nlat = serial.quad.shape[0]
        lat = slice(*split_bounds(nlat, ctx.mesh.h, ctx.coords.h))
        self.register_buffer("quad", serial.quad[lat].float().clone(), persistent=False)
        self.register_buffer("channel_weights", _clone(serial.channel_weights), persistent=False)

    def per_channel(self, forecast: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Global batch-mean spherical-mean CRPS per channel, ``[C]``, on every rank."""
        if forecast.ndim != 5:
            raise UsageError(f"forecast must be [E, B, C, H, W], got shape {tuple(forecast.shape)}")
        crps = ensemble_crps_partial(forecast, target, self.kernel, self.ctx.ensemble)
        partial = (crps * self.quad.to(crps.dtype)).sum(dim=(-2, -1)).mean(dim=0)
        return _global_mean_over_batch(partial, self.ctx)

    def forward(self, forecast: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return _channel_sum(self.per_channel(forecast, target), self.channel_weights)


class DistributedSpectralCRPSLoss(nn.Module):
    r"""Twin of ``SpectralCRPSLoss``: CRPS of :math:`|\hat f_{lm}|` with the distributed SHT, members over ranks.

    .. math::

        L = \frac1B\sum_b \sum_c w_c \sum_{l}\sum_{m \le l} c_m\,
        \mathrm{CRPS}_\alpha(\{|\hat f^e_{lm}|\}_e, |\hat f^*_{lm}|),\qquad \hat f = s\,\mathrm{SHT}(f),

    After ``torch_harmonics.distributed.DistributedRealSHT`` a rank holds its slice of degrees (h group) and orders
    (w group); the ensemble all-to-all then runs over those coefficients. Wind pairs go through
    ``DistributedRealVectorSHT`` (:class:`~sciml.forecasting.losses.ChannelSHT`). ``coefficient_scale`` :math:`s` is
    :math:`1/\sqrt{4\pi}` by default, as in the serial loss (``fcn3_loss`` uses makani's :math:`1/(4\pi)`).
    """

    # buffers (registered in __init__), declared for type checkers
    mode_weights: torch.Tensor
    degree_weights: torch.Tensor | None
    lm_weights: torch.Tensor
    channel_weights: torch.Tensor | None

    def __init__(self, serial: SpectralCRPSLoss, ctx: ParallelContext) -> None:
        super().__init__()
        self.kernel, self.ctx, self.coefficient_scale = serial.kernel, ctx, serial.coefficient_scale
        sht, vector_pairs = serial.sht, serial.transform.pairs
        nlat, nlon, grid, lmax = sht.nlat, sht.nlon, sht.grid, sht.lmax
        self.sht = thd.DistributedRealSHT(nlat, nlon, lmax=lmax, mmax=lmax, grid=grid, norm="ortho")
        vsht = None
        if vector_pairs:
            vsht = thd.DistributedRealVectorSHT(nlat, nlon, lmax=lmax, mmax=lmax, grid=grid, norm="ortho")
        self.transform = ChannelSHT(self.sht, vsht, vector_pairs)
        degrees, orders = local_degree_slice(lmax, ctx), local_order_slice(lmax, ctx)
        cm = mode_weights(lmax)[degrees, orders]
        self.register_buffer("mode_weights", cm.contiguous(), persistent=False)
        dw = serial.degree_weights
        if dw is not None:  # this rank's degrees (and orders, for per-mode weights)
            dw = (dw[..., degrees, orders] if dw.ndim == 3 else dw[..., degrees]).contiguous()
        self.register_buffer("degree_weights", dw, persistent=False)
        self.register_buffer("lm_weights", weighted_modes(self.mode_weights, self.degree_weights), persistent=False)
        self.register_buffer("channel_weights", _clone(serial.channel_weights), persistent=False)

    def coefficients(self, f: torch.Tensor) -> torch.Tensor:
        """This rank's :math:`|\\hat f_{lm}|` of tiles ``[..., h, w]`` -> ``[..., L_r, M_r]`` (float32 SHT)."""
        return coefficient_magnitudes(self.transform, f, self.coefficient_scale)

    def per_channel(self, forecast: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if forecast.ndim != 5:
            raise UsageError(f"forecast must be [E, B, C, H, W], got shape {tuple(forecast.shape)}")
        crps = ensemble_crps_partial(
            self.coefficients(forecast), self.coefficients(target), self.kernel, self.ctx.ensemble
        )
        partial = (crps * self.lm_weights).sum(dim=(-2, -1)).mean(dim=0)
        return _global_mean_over_batch(partial, self.ctx)

    def forward(self, forecast: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return _channel_sum(self.per_channel(forecast, target), self.channel_weights)


def distributed_loss(loss: nn.Module, ctx: ParallelContext) -> nn.Module:
    """The ensemble-parallel, tiled twin of a serial loss (grid CRPS, spectral CRPS, or a weighted combination).

    The twin copies the serial module's kernel, channel weights and quadrature (its rows of the serial weights),
    so it computes the serial loss exactly, whatever grid the serial loss was built for.
    """
    if isinstance(loss, CombinedLoss):
        return CombinedLoss([distributed_loss(part, ctx) for part in loss.losses], loss.weights)
    if isinstance(loss, GridCRPSLoss):
        return DistributedGridCRPSLoss(loss, ctx)
    if isinstance(loss, SpectralCRPSLoss):
        return DistributedSpectralCRPSLoss(loss, ctx)
    raise UsageError(
        f"no distributed twin for loss {type(loss).__name__}; use GridCRPSLoss, SpectralCRPSLoss or CombinedLoss"
    )
