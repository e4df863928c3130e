"""The network and its noise process, resolved from a :class:`~.config.TrainConfig` against the data."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from sciml.config import from_dict, to_dict
from sciml.errors import UsageError
from sciml.forecasting.checkpoint import DataFacts

from .config import TrainConfig


def model_config(cfg: TrainConfig, facts: DataFacts):
    """Resolve the model preset + overrides against the data (grid and aux channels from the data)."""
    from sciml.forecasting.models import FCN3Config, preset

    base = to_dict(preset(cfg.model.preset))
    fixed = {"nlat", "nlon", "n_aux"}
    clash = sorted(fixed & set(cfg.model.overrides))
    if clash:
        raise UsageError(f"model.overrides sets {clash}; these come from the data (grid, static fields + features)")
    if "degree_one_pairs" in cfg.model.overrides:
        raise UsageError("model.overrides sets degree_one_pairs; name the wind channels in model.degree_one_winds")
    base.update(cfg.model.overrides)
    base.update(nlat=facts.nlat, nlon=facts.nlon, n_aux=len(facts.static) + len(facts.feature_names))
    base.update(degree_one_pairs=[_channel_pair(p, facts.channels) for p in cfg.model.degree_one_winds])
    if facts.grid_kind != "equiangular":
        raise UsageError(f"the model's I/O grid is equiangular; the data grid is {facts.grid_kind}")
    mc = from_dict(FCN3Config, base)
    if mc.n_channels != len(facts.channels):
        raise UsageError(
            f"model preset {cfg.model.preset!r} has {mc.n_channels} state channels (n_surface {mc.n_surface} + "
            f"n_atmo_vars {mc.n_atmo_vars} x n_levels {mc.n_levels}) but the data has {len(facts.channels)} "
            f"({', '.join(facts.channels)}); set data.channels or model.overrides to match"
        )
    return mc


def _channel_pair(pair, channels: tuple[str, ...]) -> tuple[int, int]:
    missing = [c for c in pair if c not in channels]
    if len(pair) != 2 or missing:
        raise UsageError(
            f"model.degree_one_winds entry {list(pair)}: give [eastward, northward] names of data channels "
            f"({', '.join(channels)})"
        )
    return channels.index(pair[0]), channels.index(pair[1])


def input_steps(cfg: TrainConfig) -> int:
    """States the model sees per step (``model.overrides.input_steps``, else the preset's), checked as the model
    config checks it; the data windows need it before the model config can be resolved against the data."""
    from sciml.forecasting.models import preset

    steps = cfg.model.overrides.get("input_steps")
    return preset(cfg.model.preset, **({} if steps is None else {"input_steps": steps})).input_steps


def tendency_scale(stats, channels) -> torch.Tensor:
    r"""Per-channel scale of a two-step model's tendency input, :math:`\sigma_c / \sigma_{\Delta t,c}`: the
    normalised tendency :math:`(x_t - x_{t-\Delta})/\sigma_c` times it has unit variance (GraphCast's input
    normalisation of differences)."""
    idx = stats.index(list(channels))
    std, dstd = np.asarray(stats.std, dtype=np.float64)[idx], np.asarray(stats.diff_std, dtype=np.float64)[idx]
    bad = [c for c, d in zip(channels, dstd, strict=True) if not (np.isfinite(d) and d > 0)]
    if bad:
        raise UsageError(
            f"the statistics have no positive diff_std for {bad}: a two-step model needs the channels' tendency "
            "statistics; rerun `sciml data stats` on a store with consecutive time steps"
        )
    return torch.as_tensor(std / dstd, dtype=torch.float32)


def noise_scales(cfg: TrainConfig, n_noise: int) -> tuple[float, ...]:
    """Length scales (km) of the noise channels: configured, or the ``n_noise`` largest FCN3 octaves."""
    from sciml.forecasting.noise import FCN3_LENGTH_SCALES_KM

    scales = cfg.noise.length_scales_km
    if scales is None:
        if n_noise > len(FCN3_LENGTH_SCALES_KM):
            raise UsageError(f"n_noise={n_noise} needs noise.length_scales_km (FCN3 has 8 scales)")
        return tuple(FCN3_LENGTH_SCALES_KM[len(FCN3_LENGTH_SCALES_KM) - n_noise :])
    if len(scales) != n_noise:
        raise UsageError(f"noise.length_scales_km has {len(scales)} scales but the model has n_noise={n_noise}")
    return tuple(scales)


def make_noise(cfg: TrainConfig, mc, scales: tuple[float, ...]):
    """The :class:`DiffusionNoiseS2` process on the model's I/O grid (``None`` if the model takes no noise)."""
    from sciml.forecasting.noise import DiffusionNoiseS2, heat_kernel_kT

    if mc.n_noise == 0:
        return None
    kT = [heat_kernel_kT(s) for s in scales]
    return DiffusionNoiseS2(mc.nlat, mc.nlon, kT, cfg.noise.sigma, cfg.noise.lam, l_min=cfg.noise.l_min)


def resolved_dict(cfg: TrainConfig, mc) -> dict[str, Any]:
    """Resolved training config and model config as plain data (what the checkpoint stores)."""
    return {"train": to_dict(cfg), "model": to_dict(mc)}
