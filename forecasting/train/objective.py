"""The training objective of a stage: CRPS kernel, channel weights, spectral weights and wind pairs, the loss.

Everything here receives what it needs (channels, statistics, sample fields); nothing reads the store again.
"""

from __future__ import annotations

import numpy as np
import torch

from sciml.errors import UsageError
from sciml.forecasting.checkpoint import DataFacts

from .config import StageConfig, TrainConfig


def crps_kernel(stage: StageConfig):
    from sciml.forecasting.losses import AlmostFairCRPS, FairCRPS, StandardCRPS

    # Antithetic members (centred noise) are scored without their partner pairs in the spread term (losses.py).
    if stage.crps == "standard":
        return StandardCRPS(antithetic=stage.centered)
    if stage.crps == "fair":
        return FairCRPS(antithetic=stage.centered)
    return AlmostFairCRPS(stage.alpha, antithetic=stage.centered)


def channel_weights(cfg: TrainConfig, facts: DataFacts, stats) -> torch.Tensor | None:
    from sciml.forecasting.losses import auto_channel_weights

    if cfg.loss.channel_weights == "uniform":
        return None
    idx = stats.index(list(facts.channels))
    return auto_channel_weights(list(facts.channels), stats.std[idx], stats.diff_std[idx])


def spectral_channel_weights(
    cfg: TrainConfig, channels: tuple[str, ...], weights: torch.Tensor | None
) -> torch.Tensor | None:
    """The spectral CRPS's channel weights: ``weights`` (uniform: ``1/C``) times ``loss.spectral_channel_scale``.

    ``None`` (no scale given) means the same weights as the grid CRPS.
    """
    scale = cfg.loss.spectral_channel_scale
    if not scale:
        return None
    unknown = sorted(set(scale) - set(channels))
    if unknown:
        raise UsageError(
            f"loss.spectral_channel_scale names {', '.join(unknown)}, not a forecast channel ({', '.join(channels)})"
        )
    base = torch.full((len(channels),), 1.0 / len(channels), dtype=torch.float64) if weights is None else weights
    return base * torch.tensor([scale.get(c, 1.0) for c in channels], dtype=torch.float64)


def vector_pairs(cfg: TrainConfig, channels: tuple[str, ...]) -> tuple[tuple[int, int], ...]:
    """Channel indices of the ``loss.spectral_vectors`` wind pairs; unknown channel names are a usage error."""
    out = []
    for u, v in cfg.loss.spectral_vectors:
        missing = [c for c in (u, v) if c not in channels]
        if missing:
            raise UsageError(
                f"loss.spectral_vectors names {', '.join(missing)}, not a forecast channel ({', '.join(channels)})"
            )
        out.append((channels.index(u), channels.index(v)))
    return tuple(out)


def spectral_sample_fields(ds, n: int) -> tuple[torch.Tensor, tuple[str, ...]]:
    """``n`` evenly spaced normalised states ``[N, C, H, W]`` (float64) of the full-grid training dataset ``ds``
    (what the whitening weights are computed from), and their channel names."""
    n = min(n, len(ds))
    idx = np.unique(np.linspace(0, len(ds) - 1, n).round().astype(int))
    return torch.stack([ds[int(i)]["input"] for i in idx]).double(), tuple(ds.channels)


def uses_sample_fields(cfg: TrainConfig) -> bool:
    """Whether the spectral CRPS is whitened (its weights come from training states) and used by some stage."""
    return cfg.loss.spectral_degrees != "uniform" and max(spectral_weight(cfg, s) for s in cfg.stages) > 0


def degree_weights(cfg: TrainConfig, ds, pairs: tuple[tuple[int, int], ...] = ()) -> torch.Tensor | None:
    """Spectral-CRPS weights: ``[C, L]`` (``whitened``), ``[C, L, L]`` (``whitened-modes``), else ``None``.

    Computed from ``loss.spectral_samples`` evenly spaced normalised states of ``ds``, the full-grid training
    dataset (:func:`spectral_sample_fields`), with the
    whitening floor ``loss.spectral_floor`` (every rank of a tiled run reads the same full fields, so all ranks hold
    the same weights); deterministic, so a resumed run rebuilds exactly the same loss.
    """
    from sciml.forecasting.losses import (
        degree_amplitudes,
        mode_amplitudes,
        whitening_degree_weights,
        whitening_mode_weights,
    )

    if not uses_sample_fields(cfg):
        return None
    fields, _ = spectral_sample_fields(ds, cfg.loss.spectral_samples)
    if cfg.loss.spectral_degrees == "whitened-modes":
        return whitening_mode_weights(mode_amplitudes(fields, vector_pairs=pairs), cfg.loss.spectral_floor).float()
    return whitening_degree_weights(degree_amplitudes(fields, vector_pairs=pairs), cfg.loss.spectral_floor).float()


def spectral_weight(cfg: TrainConfig, stage: StageConfig) -> float:
    """The stage's spectral-CRPS weight, falling back to ``loss.spectral_weight``."""
    return cfg.loss.spectral_weight if stage.spectral_weight is None else stage.spectral_weight


def make_loss(
    cfg: TrainConfig,
    stage: StageConfig,
    mc,
    weights: torch.Tensor | None,
    degrees: torch.Tensor | None = None,
    pairs: tuple[tuple[int, int], ...] = (),
    spectral_channels: torch.Tensor | None = None,
) -> torch.nn.Module:
    from sciml.forecasting.losses import GridCRPSLoss, fcn3_loss

    kernel = crps_kernel(stage)
    sw = spectral_weight(cfg, stage)
    if sw == 0:
        return GridCRPSLoss(mc.nlat, mc.nlon, kernel, "equiangular", weights)
    return fcn3_loss(mc.nlat, mc.nlon, kernel, "equiangular", weights, sw, degrees, pairs, spectral_channels)
