r"""What a training run is made of, built from a :class:`~.config.TrainConfig`: data, model, noise and loss.

Everything rank-dependent goes through :class:`TrainHooks` (ensemble members held here, gradient sync, metric
reduction, who writes files). The serial :class:`TrainHooks` is a no-op at world size 1; a distributed run passes
its own subclass, so the training loop itself never branches on the rank.

The data order is a pure function of ``(seed, stage, step)``: position :math:`p = s B + b` of stage step
:math:`s` is sample ``perm_e[p mod n]`` of epoch :math:`e = \lfloor p/n \rfloor`, with ``perm_e`` a seeded
permutation. Resuming therefore only needs the step counter.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sciml.config import from_dict, to_dict
from sciml.errors import UsageError
from sciml.forecasting.tiles import Tile

from .config import StageConfig, TrainConfig

LOGGER = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class DataFacts:
    """Facts about the training data that a checkpoint carries so inference can check its inputs."""

    store: str
    stats: str
    channels: tuple[str, ...]
    static: tuple[str, ...]
    features: tuple[str, ...]
    feature_names: tuple[str, ...]
    grid_kind: str
    nlat: int
    nlon: int
    step_hours: int

    def as_dict(self) -> dict[str, Any]:
        return to_dict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataFacts:
        return from_dict(cls, d)


def data_config(cfg: TrainConfig, rollout: int, start: str | None, end: str | None):
    """The :class:`ForecastDataConfig` of the data layer for windows of ``rollout`` steps in ``[start, end]``."""
    from sciml.forecasting.data import ForecastDataConfig

    d = cfg.data
    return ForecastDataConfig(
        store=d.store,
        stats=d.stats,
        channels=d.channels,
        static=d.static,
        steps=rollout,
        step_hours=d.step_hours,
        start=start,
        end=end,
        features=d.features,
    )


def open_dataset(cfg: TrainConfig, rollout: int, split: str, hooks: TrainHooks | None = None):
    """Training (``split='train'``) or validation windows of ``rollout`` steps, on the rank's tile."""
    from sciml.forecasting.data import ForecastDataset

    d = cfg.data
    start, end = (d.train_start, d.train_end) if split == "train" else (d.valid_start, d.valid_end)
    try:
        ds = ForecastDataset(data_config(cfg, rollout, start, end))
        tile = hooks.tile(ds.grid.nlat, ds.grid.nlon) if hooks is not None else None
        return ds if tile is None else ForecastDataset(data_config(cfg, rollout, start, end), tile=tile)
    except UsageError as exc:
        if not Path(d.store).exists():
            raise UsageError(
                f"data store {d.store} does not exist; create it with `sciml data synth --out {d.store}` "
                "(the built-in shallow-water dataset) or `sciml data convert`"
            ) from None
        raise UsageError(f"{split} data: {exc}") from None


def data_facts(cfg: TrainConfig, ds) -> DataFacts:
    from sciml.forecasting.data import stats_path

    return DataFacts(
        store=str(cfg.data.store),
        stats=str(cfg.data.stats or stats_path(cfg.data.store)),
        channels=tuple(ds.channels),
        static=tuple(ds.static_names),
        features=tuple(cfg.data.features),
        feature_names=tuple(ds.feature_names),
        grid_kind=ds.grid.kind,
        nlat=ds.grid.nlat,
        nlon=ds.grid.nlon,
        step_hours=cfg.data.step_hours,
    )


def model_config(cfg: TrainConfig, facts: DataFacts):
    """Resolve the model preset + overrides against the data (grid and aux channels from the data)."""
    from sciml.forecasting.models import FCN3Config, preset

    base = to_dict(preset(cfg.model.preset))
    fixed = {"nlat", "nlon", "n_aux"}
    clash = sorted(fixed & set(cfg.model.overrides))
    if clash:
        raise UsageError(f"model.overrides sets {clash}; these come from the data (grid, static fields + features)")
    base.update(cfg.model.overrides)
    base.update(nlat=facts.nlat, nlon=facts.nlon, n_aux=len(facts.static) + len(facts.feature_names))
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


def spectral_sample_fields(cfg: TrainConfig) -> tuple[torch.Tensor, tuple[str, ...]]:
    """The ``loss.spectral_samples`` evenly spaced normalised training states ``[N, C, H, W]`` (float64) that the
    whitening weights are computed from, and their channel names."""
    from sciml.forecasting.data import ForecastDataset

    d = cfg.data
    ds = ForecastDataset(data_config(cfg, 1, d.train_start, d.train_end))
    n = min(cfg.loss.spectral_samples, len(ds))
    idx = np.unique(np.linspace(0, len(ds) - 1, n).round().astype(int))
    return torch.stack([ds[int(i)]["input"] for i in idx]).double(), tuple(ds.channels)


def degree_weights(cfg: TrainConfig, pairs: tuple[tuple[int, int], ...] = ()) -> torch.Tensor | None:
    """Spectral-CRPS weights: ``[C, L]`` (``whitened``), ``[C, L, L]`` (``whitened-modes``), else ``None``.

    Computed from ``loss.spectral_samples`` evenly spaced normalised training states of the whole grid, with the
    whitening floor ``loss.spectral_floor`` (every rank of a tiled run reads the same full fields, so all ranks hold
    the same weights); deterministic, so a resumed run rebuilds exactly the same loss.
    """
    from sciml.forecasting.losses import (
        degree_amplitudes,
        mode_amplitudes,
        whitening_degree_weights,
        whitening_mode_weights,
    )

    if cfg.loss.spectral_degrees == "uniform" or max(spectral_weight(cfg, s) for s in cfg.stages) == 0:
        return None
    fields, _ = spectral_sample_fields(cfg)
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


@lru_cache(maxsize=8)
def _permutation(seed: int, stage: int, epoch: int, n: int) -> np.ndarray:
    from sciml.forecasting.noise import member_seed

    g = torch.Generator().manual_seed(member_seed(seed, 1_000_003 * (stage + 1) + epoch))
    return torch.randperm(n, generator=g).numpy()


def batch_indices(seed: int, stage: int, step: int, batch: int, n: int) -> list[int]:
    """Sample indices of stage step ``step`` (see the module docstring): a pure function of its arguments."""
    out = []
    for p in range(step * batch, (step + 1) * batch):
        out.append(int(_permutation(seed, stage, p // n, n)[p % n]))
    return out


def collate(samples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack dataset samples: ``input [B,C,H,W]``, ``target [B,k,C,H,W]``, ``aux [B,k+1,A,H,W]``, ``time``.

    ``aux`` is the static fields followed by the time features at each window time (what the model takes as
    auxiliary input when it steps from that time).
    """
    x = torch.stack([s["input"] for s in samples])
    y = torch.stack([s["target"] for s in samples])
    feats = torch.stack([s["features"] for s in samples])  # [B, k+1, F, H, W]
    static = samples[0]["static"]  # [S, H, W]
    b, k1 = feats.shape[:2]
    st = static.reshape(1, 1, *static.shape).expand(b, k1, *static.shape)
    return {
        "input": x,
        "target": y,
        "aux": torch.cat([st, feats], dim=2),
        "time": torch.stack([s["time"] for s in samples]),
    }


def resolved_dict(cfg: TrainConfig, mc) -> dict[str, Any]:
    """Resolved training config and model config as plain data (what the checkpoint stores)."""
    return {"train": to_dict(cfg), "model": to_dict(mc)}


def replace_stages(cfg: TrainConfig, stages) -> TrainConfig:
    return dataclasses.replace(cfg, stages=tuple(stages))
