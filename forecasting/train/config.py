r"""Configuration of a forecasting training run (``sciml forecast train --config FILE.yaml``).

One frozen dataclass tree, read from YAML with :func:`sciml.config.from_yaml` (unknown keys are errors). A run is
a sequence of curriculum *stages* as in FCN3 (Bonev et al. 2025, Table 3): 1-step CRPS pretraining with a larger
ensemble, then multistep fair-CRPS fine-tuning (FCN3: 4 members in antithetic pairs). Each stage has its own rollout
length, ensemble size, batch, CRPS kernel, learning rate and schedule; the optimiser is Adam with FCN3's betas
:math:`(0.9, 0.95)` and gradient-norm clipping.

Built-in configs live in ``sciml/forecasting/configs/forecast/*.yaml``; :func:`resolve_config_path` accepts a
file path or one of their names (``demo``, ``tiny``, ``quick``).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from sciml.config import ConfigError, from_dict, from_yaml, to_dict
from sciml.errors import UsageError
from sciml.forecasting.data.config import DataConfig
from sciml.forecasting.runtime import RuntimeSection

LOGGER = logging.getLogger(__name__)

CRPSName = Literal["standard", "fair", "almost-fair"]
Schedule = Literal["constant", "cosine", "step"]


@dataclass(frozen=True)
class ModelSection:
    """A model preset (``tiny``, ``demo``, ``fcn3``) and field overrides of :class:`FCN3Config`.

    ``nlat``, ``nlon`` and ``n_aux`` are always taken from the data (grid, static fields + time features); the
    channel layout (``n_surface + n_atmo_vars * n_levels``) must match the number of data channels.
    ``degree_one_winds`` names the ``[eastward, northward]`` channel pairs whose degree-1 flow advances by a learned
    linear map instead of the network (``FCN3Config.degree_one_pairs``; :mod:`sciml.forecasting.models.planetary`).
    """

    preset: str = "demo"
    overrides: dict[str, Any] = field(default_factory=dict)
    degree_one_winds: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class NoiseSection:
    """AR(1) diffusion noise (one channel per length scale; default: the largest ``n_noise`` FCN3 octaves)."""

    length_scales_km: tuple[float, ...] | None = None
    sigma: float = 1.0
    lam: float = 1.0
    l_min: int = 1  # lowest noise degree (FCN3: 1; 2 leaves the planetary degree 1 alone)

    def __post_init__(self) -> None:
        if self.sigma <= 0 or self.lam <= 0:
            raise ValueError("noise.sigma and noise.lam must be > 0")
        if self.l_min < 1:
            raise ValueError(f"noise.l_min must be >= 1, got {self.l_min}")


@dataclass(frozen=True)
class StageConfig:
    """One curriculum stage.

    Attributes
    ----------
    steps : int
        Optimiser steps in this stage.
    rollout : int
        Autoregressive steps per sample; the loss is the mean over the rollout (gradients flow through it).
    members, batch_size : int
        Ensemble size ``N`` and samples per step (members are folded into the batch of one model call).
    crps, alpha : str, float
        Kernel: ``standard`` (FCN3 pretraining), ``fair`` or ``almost-fair`` with ``alpha``.
    centered : bool
        Antithetic noise: members ``2k, 2k+1`` get opposite noise (FCN3 fine-tuning), and the CRPS leaves the
        partner pairs out of its spread term. Needs an even ``members`` >= 4.
    lr, betas, weight_decay, clip : optimiser
        Adam (FCN3: betas 0.9, 0.95; clip 32 on the global gradient norm).
    schedule, warmup_steps, step_every, step_gamma, min_lr_ratio :
        ``constant``, ``cosine`` (to ``min_lr_ratio * lr``) or ``step`` (``x step_gamma`` every ``step_every``),
        after a linear warm-up.
    spectral_weight : float, optional
        This stage's weight of the spectral CRPS (default: ``loss.spectral_weight``).
    """

    name: str
    steps: int
    rollout: int = 1
    members: int = 4
    batch_size: int = 1
    crps: CRPSName = "fair"
    alpha: float = 0.95
    centered: bool = False
    lr: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.0
    clip: float = 32.0
    schedule: Schedule = "cosine"
    warmup_steps: int = 0
    step_every: int = 1000
    step_gamma: float = 0.5
    min_lr_ratio: float = 0.0
    spectral_weight: float | None = None

    def __post_init__(self) -> None:
        if self.spectral_weight is not None and self.spectral_weight < 0:
            raise ValueError(f"stage {self.name!r}: spectral_weight must be >= 0, got {self.spectral_weight}")
        if self.steps < 1 or self.rollout < 1 or self.batch_size < 1:
            raise ValueError(f"stage {self.name!r}: steps, rollout and batch_size must be >= 1")
        if self.members < 1 or (self.crps != "standard" and self.members < 2):
            raise ValueError(f"stage {self.name!r}: the {self.crps} CRPS needs members >= 2, got {self.members}")
        if self.centered and (self.members % 2 or self.members < 4):
            # With 2 members the only pair is antithetic: no independent pair estimates the spread, and the CRPS
            # stops penalising too much spread (forecasting/losses.py, "Antithetic ensembles").
            raise ValueError(
                f"stage {self.name!r}: centred (antithetic) noise needs an even members count >= 4, got "
                f"{self.members} (partner pairs are left out of the CRPS spread term); use members: 4 or more, "
                "or centered: false"
            )
        if self.lr <= 0 or self.clip <= 0 or not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"stage {self.name!r}: need lr > 0, clip > 0 and 0 <= min_lr_ratio <= 1")
        if self.warmup_steps < 0 or self.step_every < 1 or self.step_gamma <= 0:
            raise ValueError(f"stage {self.name!r}: need warmup_steps >= 0, step_every >= 1, step_gamma > 0")


@dataclass(frozen=True)
class LossSection:
    r"""FCN3 objective: grid CRPS + ``spectral_weight`` x spectral CRPS; channel weights ``uniform`` or ``auto``.

    ``spectral_degrees``: ``uniform`` weighs every spherical-harmonic coefficient by its magnitude (FCN3);
    ``whitened`` divides degree ``l`` of each channel by its typical magnitude in ``spectral_samples`` training
    states (:func:`~sciml.forecasting.losses.whitening_degree_weights`), so that the small scales of a steep
    spectrum (geopotential) constrain the members' amplitude as much as the large ones; ``whitened-modes`` does
    that per coefficient (:func:`~sciml.forecasting.losses.whitening_mode_weights`).
    ``spectral_vectors``: ``[[u500, v500], ...]`` eastward/northward wind channels that the spectral CRPS scores as
    one vector field (spheroidal and toroidal coefficients, :class:`~sciml.forecasting.losses.ChannelSHT`).
    ``spectral_channel_scale``: ``{z500: 2.0}`` multiplies the named channels' spectral CRPS (default 1; for a
    wind pair, the channel names its spheroidal (``u``) or toroidal (``v``) part).
    ``spectral_floor``: the whitening floor :math:`\epsilon`, relative to each channel's largest typical
    coefficient; coefficients below it are scored in units of :math:`\epsilon` times that coefficient, not their
    own (keeps nearly empty coefficients from dominating; on a steep spectrum too high a floor leaves the small
    scales unconstrained: at 0.01 every z500 coefficient of degree 13 and above on the demo data sits at the floor,
    at 0.003 most of degrees 13-15 are above it; ``bench/wind_spectra.py --floored`` counts them).
    """

    spectral_weight: float = 0.1
    channel_weights: Literal["uniform", "auto"] = "uniform"
    spectral_degrees: Literal["uniform", "whitened", "whitened-modes"] = "uniform"
    spectral_samples: int = 64
    spectral_vectors: tuple[tuple[str, str], ...] = ()
    spectral_channel_scale: dict[str, float] = field(default_factory=dict)
    spectral_floor: float = 1e-2

    def __post_init__(self) -> None:
        if not 0 < self.spectral_floor <= 1:
            raise ValueError(f"loss.spectral_floor must be in (0, 1], got {self.spectral_floor}")
        if self.spectral_weight < 0:
            raise ValueError(f"loss.spectral_weight must be >= 0, got {self.spectral_weight}")
        if self.spectral_samples < 1:
            raise ValueError(f"loss.spectral_samples must be >= 1, got {self.spectral_samples}")
        if any(not v >= 0 for v in self.spectral_channel_scale.values()):
            raise ValueError(f"loss.spectral_channel_scale values must be >= 0, got {self.spectral_channel_scale}")
        names = [c for pair in self.spectral_vectors for c in pair]
        if any(len(pair) != 2 for pair in self.spectral_vectors) or len(set(names)) != len(names):
            raise ValueError(
                f"loss.spectral_vectors must be distinct [eastward, northward] channel pairs, "
                f"got {self.spectral_vectors}"
            )


@dataclass(frozen=True)
class ValidationSection:
    """Validation every ``every`` steps on ``samples`` fixed held-out windows of ``rollout`` steps."""

    every: int = 100
    samples: int = 8
    members: int = 4
    rollout: int = 4

    def __post_init__(self) -> None:
        if self.every < 1 or self.samples < 1 or self.members < 2 or self.rollout < 1:
            raise ValueError("validation: need every >= 1, samples >= 1, members >= 2, rollout >= 1")


@dataclass(frozen=True)
class TrainConfig:
    """A complete training run. See the module docstring and ``forecasting/configs/forecast/demo.yaml``."""

    stages: tuple[StageConfig, ...]
    name: str = "forecast"
    seed: int = 0
    data: DataConfig = DataConfig()  # the store, channels, features and time ranges (sciml.forecasting.data)
    model: ModelSection = ModelSection()
    noise: NoiseSection = NoiseSection()
    loss: LossSection = LossSection()
    validation: ValidationSection = ValidationSection()
    checkpoint_every: int = 100
    nan_policy: Literal["stop", "skip"] = "stop"
    max_bad_steps: int = 10  # consecutive skipped steps before "skip" gives up
    runtime: RuntimeSection = RuntimeSection()  # device, precision, checkpointing, compile, threads, loading
    threads: int | None = None  # deprecated: runtime.threads

    def __post_init__(self) -> None:
        if self.threads is not None:
            LOGGER.warning("config key `threads` is deprecated: write `runtime: {threads: %d}`", self.threads)
            if self.runtime.threads is None:
                object.__setattr__(self, "runtime", dataclasses.replace(self.runtime, threads=self.threads))
            object.__setattr__(self, "threads", None)
        if not self.stages:
            raise ValueError("stages must list at least one curriculum stage")
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stage names must be unique, got {names}")
        if self.checkpoint_every < 1 or self.max_bad_steps < 1:
            raise ValueError("checkpoint_every and max_bad_steps must be >= 1")

    @property
    def total_steps(self) -> int:
        return sum(s.steps for s in self.stages)

    def stage_at(self, step: int) -> tuple[int, StageConfig, int]:
        """``(stage index, stage, step within the stage)`` of global step ``step`` (0-based)."""
        if step < 0:
            raise ValueError(step)
        start = 0
        for i, s in enumerate(self.stages):
            if step < start + s.steps:
                return i, s, step - start
            start += s.steps
        raise IndexError(f"step {step} is past the last stage ({self.total_steps} steps)")


BUILTIN_PACKAGE = "sciml.forecasting.configs.forecast"


def builtin_configs() -> list[str]:
    """Names of the built-in training configs."""
    return sorted(p.name[:-5] for p in resources.files(BUILTIN_PACKAGE).iterdir() if p.name.endswith(".yaml"))


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A YAML path, or the file of built-in config ``name`` (``demo``, ``tiny``, ``quick``)."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.is_file():
            raise UsageError(f"config file {p} does not exist (built-in configs: {', '.join(builtin_configs())})")
        return p
    res = resources.files(BUILTIN_PACKAGE).joinpath(f"{p.name}.yaml")
    if not res.is_file():
        raise UsageError(
            f"no config file {p} and no built-in config {str(name_or_path)!r}; built-in: {', '.join(builtin_configs())}"
        )
    return Path(str(res))


def load_train_config(name_or_path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read a :class:`TrainConfig` from a YAML path or a built-in name, applying dotted-key ``overrides``."""
    path = resolve_config_path(name_or_path)
    if not overrides:
        return from_yaml(TrainConfig, path)
    cfg = to_dict(from_yaml(TrainConfig, path))
    for key, value in overrides.items():
        node = cfg
        parts = key.split(".")
        for part in parts[:-1]:
            if part.isdigit() and isinstance(node, list):
                if int(part) >= len(node):
                    where = ".".join(parts[: parts.index(part)])
                    raise ConfigError(
                        f"--set {key}: {where} has {len(node)} entries (0..{len(node) - 1}); add the stage in the "
                        "config file"
                    )
                node = node[int(part)]
            elif isinstance(node, dict) and part in node:
                node = node[part]
            else:
                raise ConfigError(f"--set {key}: no section {part!r}")
        last = parts[-1]
        if isinstance(node, list) and last.isdigit():
            if int(last) >= len(node):
                raise ConfigError(f"--set {key}: the list has {len(node)} entries (0..{len(node) - 1})")
            node[int(last)] = value
        else:
            node[last] = value
    return from_dict(TrainConfig, cfg)


def config_from_dict(d: dict[str, Any]) -> TrainConfig:
    """Inverse of :func:`sciml.config.to_dict` (resolved configs stored in checkpoints)."""
    return from_dict(TrainConfig, d)


def with_stages(cfg: TrainConfig, **changes: Any) -> TrainConfig:
    """Apply the same field changes to every stage (e.g. ``steps=3`` for a smoke run)."""
    return dataclasses.replace(cfg, stages=tuple(dataclasses.replace(s, **changes) for s in cfg.stages))
