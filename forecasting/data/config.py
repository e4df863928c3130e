"""The ``data`` section of a training config: which store, channels, features and time ranges a run uses.

One frozen dataclass, read from YAML with :func:`sciml.config.from_yaml` as ``TrainConfig.data`` and taken by
:class:`~.dataset.ForecastDataset` together with the window it reads (rollout steps, time range, tile,
normalisation), which are arguments of the dataset, not configuration.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Split = Literal["train", "valid"]


@dataclass(frozen=True)
class DataConfig:
    """Which store and channels are used, and which time ranges train and validate (YAML section ``data``).

    Ranges are inclusive ISO times; on the built-in dataset trajectories are laid end to end in time, so a range
    selects whole held-out trajectories.
    """

    store: Path = Path("data/swe.zarr")
    stats: Path | None = None  # default: STORE.stats.nc beside the store (data/swe.zarr -> data/swe.stats.nc)
    channels: tuple[str, ...] | None = None  # default: every dynamic channel of the store
    static: tuple[str, ...] | None = None  # default: every static field of the store
    features: tuple[str, ...] = ("cos_zenith", "day_of_year")
    step_hours: int = 6  # time between a sample's input and its first target (a multiple of the store's step)
    train_start: str | None = None
    train_end: str | None = None
    valid_start: str | None = None
    valid_end: str | None = None

    def __post_init__(self) -> None:
        if self.step_hours < 1:
            raise ValueError(f"data.step_hours must be >= 1, got {self.step_hours}")

    @property
    def stats_file(self) -> Path:
        """The statistics file: ``stats``, or ``STORE.stats.nc`` beside the store."""
        from .stats import stats_path

        return Path(self.stats) if self.stats is not None else stats_path(self.store)

    def time_range(self, split: Split) -> tuple[str | None, str | None]:
        """``(start, end)`` of the ``train`` or ``valid`` split (``None``: the store's first or last time)."""
        if split == "train":
            return self.train_start, self.train_end
        if split == "valid":
            return self.valid_start, self.valid_end
        raise ValueError(f"split must be 'train' or 'valid', got {split!r}")
