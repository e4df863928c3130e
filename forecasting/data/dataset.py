r"""Training samples: a torch ``Dataset`` of normalised forecast windows on one lat x lon tile.

Sample ``i`` starts at an initial time :math:`t_i` and holds

* ``input``   ``[C, h, w]``: :math:`(x(t_i) - \mu)/\sigma`,
* ``target``  ``[k, C, h, w]``: the same at :math:`t_i + \Delta, \dots, t_i + k\Delta`,
* ``static``  ``[S, h, w]``: static fields (orography, land-sea mask), normalised by their area mean/std,
* ``features`` ``[k+1, F, h, w]``: time features (cosine of the solar zenith angle, day-of-year encodings) at
  :math:`t_i, \dots, t_i + k\Delta`, so an autoregressive rollout has them for every step,
* ``time`` ``[k+1]`` int64 nanoseconds since 1970, ``index`` the sample index.

A window never crosses a missing time step or a trajectory boundary (``segment``), and all its times lie in
``[start, end]``. Only the tile's rows and columns are read from the zarr store (chunks are one time step and at
most 181x360 points, :mod:`.store`), so a rank of the spatially decomposed model never assembles the globe.
Store handles are opened lazily in each process, so the dataset works with multi-worker ``DataLoader``\ s.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import xarray as xr

from sciml.errors import UsageError
from sciml.forecasting.tiles import Tile

from .contract import dynamic_channels, grid_of, segments, static_channels
from .features import resolve_features
from .grid import Grid
from .readers import open_zarr, ordered
from .stats import NormStats, stats_path


@dataclass(frozen=True)
class ForecastDataConfig:
    """Which store, channels, window and features the training samples use (YAML section ``data``)."""

    store: Path
    stats: Path | None = None  # default: beside the store (data/swe.zarr -> data/swe.stats.nc)
    channels: tuple[str, ...] | None = None  # default: every dynamic channel of the store
    static: tuple[str, ...] | None = None  # default: every static field of the store
    steps: int = 1  # targets t+dt .. t+steps*dt
    step_hours: int = 6
    start: str | None = None
    end: str | None = None
    features: tuple[str, ...] = ("cos_zenith", "day_of_year")
    normalize: bool = True

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.step_hours < 1:
            raise ValueError(f"step_hours must be >= 1, got {self.step_hours}")


@dataclass
class _Meta:
    channels: list[str]
    static: list[str]
    grid: Grid
    times: pd.DatetimeIndex
    starts: np.ndarray = field(repr=False)
    window: np.ndarray = field(repr=False)  # [n_samples, k+1] time indices


class ForecastDataset(torch.utils.data.Dataset):
    """Normalised (input, targets) windows of a canonical store, on one tile. See the module docstring."""

    def __init__(self, cfg: ForecastDataConfig, tile: Tile | None = None, features: tuple | None = None) -> None:
        self.cfg = cfg
        self.path = Path(cfg.store)
        self._meta = self._scan()
        g = self._meta.grid
        self.tile = tile or Tile.full(g.nlat, g.nlon)
        self.tile.check(g.nlat, g.nlon)
        self.features = features if features is not None else resolve_features(cfg.features)
        self.stats: NormStats | None = None
        if cfg.normalize:
            self.stats = NormStats.load(cfg.stats or stats_path(self.path))
            self._norm = self.stats.tensors(self._meta.channels)
            if self._meta.static:
                self.stats_static_index = [self._static_index(s) for s in self._meta.static]
        self._arrays: dict | None = None
        self._static_cache: torch.Tensor | None = None

    # ------------------------------------------------------------------ metadata
    def _scan(self) -> _Meta:
        where = str(self.path)
        if not self.path.exists():
            raise UsageError(f"{where}: no such store; build it with `sciml data synth` or `sciml data convert`")
        with ordered(open_zarr(self.path)) as ds:
            if "sciml_contract" not in ds.attrs:
                raise UsageError(f"{where}: not a canonical store; convert it first with `sciml data convert`")
            if "member" in ds.dims:
                raise UsageError(
                    f"{where} keeps {ds.sizes['member']} ensemble members; training takes one trajectory: convert "
                    "with --member N"
                )
            grid = grid_of(ds, where)
            dyn, st = dynamic_channels(ds), static_channels(ds)
            chans = list(self.cfg.channels) if self.cfg.channels is not None else dyn
            stat = list(self.cfg.static) if self.cfg.static is not None else st
            for wanted, have, kind in ((chans, dyn, "channel"), (stat, st, "static field")):
                missing = [c for c in wanted if c not in have]
                if missing:
                    raise UsageError(f"{where}: {kind}(s) {missing} not in the store; available: {have}")
            times = pd.DatetimeIndex(ds["time"].values)
            seg = segments(ds)
        k = self.cfg.steps
        lag = pd.Timedelta(hours=self.cfg.step_hours)
        pos = {t: i for i, t in enumerate(times.as_unit("ns").asi8)}
        lo = pd.Timestamp(self.cfg.start) if self.cfg.start else times[0]
        hi = pd.Timestamp(self.cfg.end) if self.cfg.end else times[-1]
        windows = []
        for i, t in enumerate(times):
            if t < lo or t + k * lag > hi:
                continue
            idx = [pos.get((t + j * lag).value) for j in range(k + 1)]
            if any(x is None for x in idx) or any(seg[x] != seg[i] for x in idx):
                continue
            windows.append(idx)
        if not windows:
            raise UsageError(
                f"{where}: no window of {k} step(s) of {self.cfg.step_hours} h fits in {lo} .. {hi}; check --start/"
                "--end, steps and step_hours (a multiple of the store's time step)"
            )
        w = np.asarray(windows, dtype=np.int64)
        return _Meta(chans, stat, grid, times, w[:, 0], w)

    def _static_index(self, name: str) -> int:
        assert self.stats is not None
        if name not in self.stats.static_channels:
            raise UsageError(f"no statistics for static field {name!r}; rerun `sciml data stats`")
        return self.stats.static_channels.index(name)

    @property
    def channels(self) -> list[str]:
        return list(self._meta.channels)

    @property
    def static_names(self) -> list[str]:
        return list(self._meta.static)

    @property
    def feature_names(self) -> list[str]:
        return [n for f in self.features for n in f.names]

    @property
    def grid(self) -> Grid:
        return self._meta.grid

    @property
    def lat(self) -> np.ndarray:
        return self.grid.lat[self.tile.slices[0]]

    @property
    def lon(self) -> np.ndarray:
        return self.grid.lon[self.tile.slices[1]]

    def sample_times(self) -> pd.DatetimeIndex:
        """Initial time of every sample."""
        return self._meta.times[self._meta.starts]

    def __len__(self) -> int:
        return len(self._meta.starts)

    # ------------------------------------------------------------------ reading
    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_arrays"] = None  # zarr handles are reopened in each DataLoader worker
        return state

    def _open(self) -> dict:
        if self._arrays is None:
            import zarr

            group = zarr.open_group(str(self.path), mode="r")
            self._arrays = {c: group[c] for c in self._meta.channels + self._meta.static}
        return self._arrays

    def read(self, time_index: np.ndarray | list[int]) -> np.ndarray:
        """Raw (un-normalised) ``[T, C, h, w]`` float32 fields of the tile at store time indices."""
        arrays = self._open()
        ls, xs = self.tile.slices
        idx = np.asarray(time_index, dtype=np.int64)
        out = np.stack([arrays[c].get_orthogonal_selection((idx, ls, xs)) for c in self._meta.channels], axis=1)
        finite = np.isfinite(out)
        if not finite.all():
            bad = [
                f"{self._meta.channels[c]} ({int((~finite[:, c]).sum())} values)"
                for c in range(out.shape[1])
                if not finite[:, c].all()
            ]
            times = [str(self._meta.times[i]) for j, i in enumerate(idx) if not finite[j].all()]
            raise UsageError(
                f"{self.path}: NaN/inf in channel(s) {', '.join(bad)} at {times}; run `sciml data check {self.path}` "
                "and exclude those times (--start/--end) or those channels"
            )
        return out.astype(np.float32, copy=False)

    def _static(self) -> torch.Tensor:
        if self._static_cache is None:
            arrays = self._open()
            ls, xs = self.tile.slices
            vals = [np.asarray(arrays[s][ls, xs], dtype=np.float32) for s in self._meta.static]
            x = torch.as_tensor(np.stack(vals)) if vals else torch.zeros(0, *self.tile.shape)
            if self.stats is not None and vals:
                assert self.stats.static_mean is not None and self.stats.static_std is not None  # stored with statics
                m = torch.as_tensor(self.stats.static_mean[self.stats_static_index], dtype=torch.float32)
                s = torch.as_tensor(self.stats.static_std[self.stats_static_index], dtype=torch.float32)
                x = (x - m[:, None, None]) / torch.where(s > 0, s, 1.0)[:, None, None]
            self._static_cache = x
        return self._static_cache

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if not 0 <= i < len(self):
            raise IndexError(f"sample {i} out of range (dataset has {len(self)})")
        idx = self._meta.window[i]
        x = torch.from_numpy(self.read(idx))
        if self.stats is not None:
            x = (x - self._norm["mean"]) / self._norm["std"]
        times = self._meta.times[idx]
        feats = [f(times.values, self.lat, self.lon) for f in self.features]
        ft = torch.from_numpy(np.concatenate(feats, axis=1)) if feats else torch.zeros(len(idx), 0, *self.tile.shape)
        return {
            "input": x[0],
            "target": x[1:],
            "static": self._static(),
            "features": ft,
            "time": torch.as_tensor(times.as_unit("ns").asi8),
            "index": torch.tensor(i),
        }


def open_canonical(path: str | os.PathLike[str]) -> xr.Dataset:
    """Open a canonical store lazily with xarray (for analysis and scoring code)."""
    return ordered(open_zarr(Path(path)))
