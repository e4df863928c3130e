"""FCN3-style stochastic one-step map on the sphere (Bonev et al. 2025, arXiv 2507.12144).

.. math::

    u_{n+1} = F_\\theta(u_n, a_n, z_n)\\qquad
    \\big(\\text{two-step model: } u_{n+1} = F_\\theta(u_n, (u_n - u_{n-1})\\,s, a_n, z_n)\\big)

``u`` is the state on the equiangular I/O grid, ``a`` auxiliary fields (static fields, time features) and
``z`` latent noise (see :mod:`sciml.forecasting.noise`); ensemble members differ only in ``z``. A two-step model
also sees the last tendency, scaled per channel by the ``tendency_scale`` buffer :math:`s` (the trainer sets it to
:math:`\\sigma_c/\\sigma_{\\Delta t,c}` from the data statistics, so that the tendency input has unit variance as
the normalised state has, as in GraphCast); it enters the aux encoder beside ``a`` and ``z``.

Pipeline: per-level shared DISCO encoder for the atmospheric channels, a surface encoder and an aux encoder,
all mapping the I/O grid to the internal Legendre-Gauss grid; ``num_layers`` processor blocks, global
(spherical-harmonic, isotropic) every ``global_block_frequency``-th block and local (DISCO) otherwise, with the aux
embedding concatenated before every block; bilinear resampling back to the I/O grid followed by DISCO decoders;
soft clamp on non-negative channels. The network predicts the next state directly (FCN3) or, with
``residual=True``, the increment :math:`u_{n+1} - u_n`. With ``degree_one_pairs`` the winds' degree-1 flow of the
output is replaced by a learned linear map of the input's (:mod:`sciml.forecasting.models.planetary`).
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint
from torch_harmonics.filter_basis import get_filter_basis

from sciml.errors import UsageError
from sciml.forecasting.models.config import FCN3Config
from sciml.forecasting.models.layers import (
    DiscoDecoder,
    DiscoEncoder,
    DiscoSpec,
    NeuralOperatorBlock,
    SerialSphereOps,
    SphereOps,
    cutoff_radius,
    soft_clamp,
)
from sciml.forecasting.models.planetary import DegreeOneFlow
from sciml.forecasting.sphere import exact_lmax

IO_GRID = "equiangular"


class FCN3(nn.Module):
    """The FCN3-style spherical neural operator.

    Parameters
    ----------
    config : FCN3Config
        Sizes (see :mod:`sciml.forecasting.models.config` for the channel layout).
    ops : SphereOps, optional
        Factory of spherical primitives; :class:`SerialSphereOps` (torch-harmonics) by default.
    checkpoint_blocks : bool, optional
        Activation checkpointing of the processor: each block keeps only its input during the forward pass and
        recomputes its activations in the backward pass (``torch.utils.checkpoint``, non-reentrant), trading one
        extra forward of the processor for its activation memory. Same values and gradients; a run-time choice,
        not part of the checkpointed config. Without autograd (inference) it changes nothing.

    Examples
    --------
    >>> cfg = preset("tiny")
    >>> model = FCN3(cfg)
    >>> x = torch.randn(1, cfg.n_channels, cfg.nlat, cfg.nlon)
    >>> aux = torch.randn(1, cfg.n_aux, cfg.nlat, cfg.nlon)
    >>> z = torch.randn(1, cfg.n_noise, cfg.nlat, cfg.nlon)
    >>> model(x, aux, z).shape
    torch.Size([1, 6, 33, 64])
    """

    # buffers (registered in __init__), declared for type checkers
    clamp_mask: torch.Tensor
    tendency_scale: torch.Tensor  # only with input_steps == 2

    def __init__(self, config: FCN3Config, ops: SphereOps | None = None, checkpoint_blocks: bool = False) -> None:
        super().__init__()
        self.config = cfg = config
        self.checkpoint_blocks = checkpoint_blocks
        ops = ops if ops is not None else SerialSphereOps()
        io_shape = (cfg.nlat, cfg.nlon)
        self.io_shape_local = ops.local_shape(io_shape)  # a tile of the grid when the model is distributed
        h, w = cfg.internal_shape
        grid = cfg.internal_grid
        common = dict(
            kernel_shape=tuple(cfg.kernel_shape), basis_type=cfg.basis_type, basis_norm_mode=cfg.basis_norm_mode
        )

        self.atmo_encoder = DiscoEncoder(
            ops, cfg.n_atmo_vars, cfg.atmo_embed_dim, io_shape, (h, w), grid_in=IO_GRID, grid_out=grid, **common
        )
        self.atmo_decoder = DiscoDecoder(
            ops, cfg.atmo_embed_dim, cfg.n_atmo_vars, (h, w), io_shape, grid_in=grid, grid_out=IO_GRID, **common
        )
        if cfg.n_surface > 0:
            self.surf_encoder = DiscoEncoder(
                ops, cfg.n_surface, cfg.surf_embed_dim, io_shape, (h, w), grid_in=IO_GRID, grid_out=grid, **common
            )
            self.surf_decoder = DiscoDecoder(
                ops, cfg.surf_embed_dim, cfg.n_surface, (h, w), io_shape, grid_in=grid, grid_out=IO_GRID, **common
            )
        if cfg.n_aux_in > 0:
            self.aux_encoder = DiscoEncoder(
                ops, cfg.n_aux_in, cfg.aux_embed_dim, io_shape, (h, w), grid_in=IO_GRID, grid_out=grid, **common
            )

        # One SHT pair shared by all global blocks: lmax = h degrees on the Gauss grid (FCN3: 360); torch-harmonics
        # truncates triangularly, so the w // 2 + 1 orders become min(lmax, mmax) = lmax.
        lmax = exact_lmax(h, grid)
        mmax = w // 2 + 1
        self.sht = ops.sht(h, w, lmax, mmax, grid)
        self.isht = ops.isht(h, w, lmax, mmax, grid)

        width_in, width_out = cfg.block_in_dim, cfg.embed_dim
        blocks = []
        for i in range(cfg.num_layers):
            if cfg.is_global_block(i):
                conv = ops.spectral_conv(self.sht, self.isht, width_in, width_in)
            else:
                spec = DiscoSpec(
                    groups=1,
                    grid_in=grid,
                    grid_out=grid,
                    theta_cutoff=2.0 * cutoff_radius(h, tuple(cfg.kernel_shape)),
                    **common,
                )
                conv = ops.disco(width_in, width_in, (h, w), (h, w), spec)
            blocks.append(NeuralOperatorBlock(conv, width_in, width_out, cfg.mlp_ratio, cfg.layer_scale_init))
        self.blocks = nn.ModuleList(blocks)

        # only with pairs, so that FCN3's state_dict (and old checkpoints) stay as they were
        self.degree_one = DegreeOneFlow(cfg.degree_one_pairs, cfg.nlat, cfg.nlon, ops) if cfg.degree_one_pairs else None

        clamp = torch.zeros(cfg.n_channels, dtype=torch.bool)
        clamp[list(cfg.clamp_channels)] = True
        self.register_buffer("clamp_mask", clamp.reshape(1, -1, 1, 1), persistent=False)
        if cfg.input_steps == 2:
            # persistent (saved and resumed with the weights); one-step models have no such entry, so their
            # state_dict and old checkpoints are unchanged. Ones until the trainer sets sigma / sigma_dt.
            self.register_buffer("tendency_scale", torch.ones(cfg.n_channels))

    # ------------------------------------------------------------------ encoder / decoder
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """State ``[B, C, H, W]`` -> processor features ``[B, embed_dim, h, w]``."""
        cfg = self.config
        b = x.shape[0]
        atmo = x[:, cfg.n_surface :].reshape(b, cfg.n_atmo_vars, cfg.n_levels, *x.shape[-2:])
        atmo = atmo.transpose(1, 2).reshape(b * cfg.n_levels, cfg.n_atmo_vars, *x.shape[-2:])
        feats = self.atmo_encoder(atmo)
        feats = feats.reshape(b, cfg.n_levels * cfg.atmo_embed_dim, *feats.shape[-2:])
        if cfg.n_surface > 0:
            feats = torch.cat([feats, self.surf_encoder(x[:, : cfg.n_surface])], dim=1)
        return feats

    def decode(self, feats: torch.Tensor) -> torch.Tensor:
        """Processor features ``[B, embed_dim, h, w]`` -> state ``[B, C, H, W]``."""
        cfg = self.config
        b = feats.shape[0]
        atmo = feats[:, : cfg.n_levels * cfg.atmo_embed_dim]
        atmo = self.atmo_decoder(atmo.reshape(b * cfg.n_levels, cfg.atmo_embed_dim, *feats.shape[-2:]))
        shape = atmo.shape[-2:]
        atmo = atmo.reshape(b, cfg.n_levels, cfg.n_atmo_vars, *shape).transpose(1, 2)
        atmo = atmo.reshape(b, cfg.n_levels * cfg.n_atmo_vars, *shape)
        if cfg.n_surface > 0:
            surf = self.surf_decoder(feats[:, cfg.n_levels * cfg.atmo_embed_dim :])
            return torch.cat([surf, atmo], dim=1)
        return atmo

    # ------------------------------------------------------------------ forward
    def _check(self, name: str, t: torch.Tensor | None, channels: int, batch: int | None) -> None:
        if channels == 0:
            if t is not None and t.shape[1] != 0:
                raise UsageError(f"{name} given but the model was configured with 0 {name} channels")
            return
        if t is None:
            raise UsageError(f"{name} is required: the model expects {channels} {name} channels")
        expected = (batch if batch is not None else t.shape[0], channels, *self.io_shape_local)
        if t.ndim != 4 or tuple(t.shape) != expected:
            raise UsageError(f"{name} has shape {tuple(t.shape)}, expected [B, C, H, W] = {list(expected)}")

    def forward(
        self,
        x: torch.Tensor,
        aux: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
        prev: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """One step: ``x`` ``[B, C, H, W]``, ``aux`` ``[B, n_aux, H, W]``, ``noise`` ``[B, n_noise, H, W]`` and,
        for a model with ``input_steps=2`` (only then), ``prev`` ``[B, C, H, W]``, the state one step before ``x``."""
        cfg = self.config
        self._check("x", x, cfg.n_channels, None)
        self._check("aux", aux, cfg.n_aux, x.shape[0])
        self._check("noise", noise, cfg.n_noise, x.shape[0])
        tendency = None
        if cfg.input_steps == 2:
            if prev is None:
                raise UsageError("prev is required: the model has input_steps=2 (it sees the previous state too)")
            self._check("prev", prev, cfg.n_channels, x.shape[0])
            tendency = (x - prev) * self.tendency_scale.reshape(1, -1, 1, 1).to(x.dtype)
        elif prev is not None:
            raise UsageError("prev given but the model has input_steps=1 (it sees the current state only)")

        extra = [t for t, n in ((aux, cfg.n_aux), (noise, cfg.n_noise)) if n > 0 and t is not None]
        if tendency is not None:
            extra.append(tendency)
        aux_feats = self.aux_encoder(torch.cat(extra, dim=1).to(x.dtype)) if extra else None

        feats = self.encode(x)
        recompute = self.checkpoint_blocks and torch.is_grad_enabled()
        for block in self.blocks:
            if aux_feats is not None:
                feats = torch.cat([feats, aux_feats], dim=1)
            feats = checkpoint(block, feats, use_reentrant=False) if recompute else block(feats)
        out = self.decode(feats).to(x.dtype)  # under bf16 autocast the state stays in the caller's precision
        if cfg.residual:
            out = x + out
        if self.degree_one is not None:
            out = self.degree_one(x, out)
        if cfg.clamp_channels:
            out = torch.where(self.clamp_mask, soft_clamp(out), out)
        return out


def ensemble_step(
    model: FCN3,
    state: torch.Tensor,
    aux: torch.Tensor | None,
    noise: torch.Tensor | None,
    prev: torch.Tensor | None = None,
    max_batch: int | None = None,
) -> torch.Tensor:
    """Advance every ensemble member one step: members are folded into the batch of the model call.

    ``state`` ``[E, B, C, H, W]``, ``aux`` ``[B, n_aux, H, W]`` (shared by the members), ``noise``
    ``[E, B, n_noise, H, W]`` (one realisation per member, e.g. ``EnsembleNoise.to_grid``), ``prev``
    ``[E, B, C, H, W]`` (each member's previous state; only for a model with ``input_steps=2``) ->
    ``[E, B, C, H, W]``.

    ``max_batch`` (default: all ``E * B`` samples at once) splits the folded batch into consecutive calls of at
    most that many samples. The network treats samples independently, so the result is the same up to float
    rounding, while the activations held at once shrink with the call: 384 samples of the full demo's model in
    one call peak at 12 GB on the CPU, one sample per call at 1 GB, and is 2.3 times faster there
    (``bench/infer_batch.py``).
    """
    if max_batch is not None and max_batch < 1:
        raise UsageError(f"max_batch must be >= 1, got {max_batch}")
    if state.ndim != 5:
        raise UsageError(f"ensemble state must be [E, B, C, H, W], got shape {tuple(state.shape)}")
    e, b = state.shape[:2]
    if noise is not None and tuple(noise.shape[:2]) != (e, b):
        raise UsageError(f"noise leads with {tuple(noise.shape[:2])}, expected (members, batch) = {(e, b)}")
    if prev is not None and tuple(prev.shape) != tuple(state.shape):
        raise UsageError(f"prev has shape {tuple(prev.shape)}, expected the state's {tuple(state.shape)}")
    x = state.reshape(e * b, *state.shape[2:])
    a = None if aux is None else aux.unsqueeze(0).expand(e, *aux.shape).reshape(e * b, *aux.shape[1:])
    z = None if noise is None else noise.reshape(e * b, *noise.shape[2:])
    p = None if prev is None else prev.reshape(e * b, *prev.shape[2:])
    n = e * b
    size = n if max_batch is None else min(max_batch, n)
    outs = []
    for i in range(0, n, size):
        part = [None if t is None else t[i : i + size] for t in (x, a, z, p)]
        if p is None:  # keep one-step models' calls (and torch.compile graphs) as they were
            outs.append(model(*part[:3]))
        else:
            outs.append(model(*part))
    out = outs[0] if len(outs) == 1 else torch.cat(outs)
    return out.reshape(e, b, *state.shape[2:])


def count_parameters(model: nn.Module) -> int:
    """Number of real scalar parameters (a complex parameter counts twice)."""
    return sum(p.numel() * (2 if p.is_complex() else 1) for p in model.parameters())


def expected_parameter_count(cfg: FCN3Config) -> int:
    r"""Closed-form parameter count of :class:`FCN3` for ``cfg`` (independent of the module code).

    With :math:`E` the processor width, :math:`I = E + E_\mathrm{aux}` the block input, :math:`H=\lfloor rI\rfloor`,
    :math:`K` DISCO basis functions and :math:`L` spectral degrees:

    .. math::

        N = n_g\,2 I^2 L + n_\ell\, I^2 K + n_b\,(I H + H + H E + E + E) + \sum_\mathrm{enc/dec} c_\mathrm{out}
        \frac{c_\mathrm{in}}{\gcd(c_\mathrm{in}, c_\mathrm{out})} K + 12\,n_\mathrm{pairs}.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*'morlet' basis type is deprecated", category=DeprecationWarning)
        k = get_filter_basis(tuple(cfg.kernel_shape), cfg.basis_type).kernel_size
    e, i = cfg.embed_dim, cfg.block_in_dim
    hid = int(cfg.mlp_ratio * i)
    n_glob = sum(cfg.is_global_block(j) for j in range(cfg.num_layers))
    n_loc = cfg.num_layers - n_glob
    lmax = exact_lmax(cfg.internal_shape[0], cfg.internal_grid)

    def grouped(cin: int, cout: int) -> int:
        return cout * (cin // math.gcd(cin, cout)) * k

    n = n_glob * 2 * i * i * lmax + n_loc * i * i * k + cfg.num_layers * (i * hid + hid + hid * e + e + e)
    n += grouped(cfg.n_atmo_vars, cfg.atmo_embed_dim) + grouped(cfg.atmo_embed_dim, cfg.n_atmo_vars)
    if cfg.n_surface:
        n += grouped(cfg.n_surface, cfg.surf_embed_dim) + grouped(cfg.surf_embed_dim, cfg.n_surface)
    if cfg.n_aux_in:  # aux + noise (+ the tendency of every state channel when input_steps = 2)
        n += grouped(cfg.n_aux_in, cfg.aux_embed_dim)
    # degree-1 flow map per wind pair: real 2x2 (axial) + complex 2x2 (equatorial)
    return n + 12 * len(cfg.degree_one_pairs)
