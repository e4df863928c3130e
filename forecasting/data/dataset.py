r"""Training samples: a torch ``Dataset`` of normalised forecast windows on one lat x lon tile.

Sample ``i`` starts at an initial time :math:`t_i` and holds

* ``input``   ``[C, h, w]``: :math:`(x(t_i) - \mu)/\sigma`,
* ``target``  ``[k, C, h, w]``: the same at :math:`t_i + \Delta, \dots, t_i + k\Delta`,
* ``static``  ``[S, h, w]``: static fields (orography, land-sea mask), normalised by their area mean/std,
* ``features`` ``[k+1, F, h, w]``: time features (cosine of the solar zenith angle, day-of-year encodings) at
  :math:`t_i, \dots, t_i + k\Delta`, so an autoregressive rollout has them for every step,
* ``time`` ``[k+1]`` int64 nanoseconds since 1970, ``index`` the sample index,
* ``previous`` ``[m-1, C, h, w]`` (only with ``history`` :math:`m > 1`, for a model that also sees earlier
  states): the same at :math:`t_i - (m-1)\Delta, \dots, t_i - \Delta`.

A window (with its earlier times) never crosses a missing time step or a trajectory boundary (``segment``), and all
its times lie in ``[start, end]``. Only the tile's rows and columns are read from the zarr store (chunks are one
time step and at most 181x360 points, :mod:`.store`), so a rank of the spatially decomposed model never assembles
the globe.
Store handles are opened lazily in each process, so the dataset works with multi-worker ``DataLoader``\ s
(:mod:`.loader`).

The store, channels and features come from the ``data`` section (:class:`~.config.DataConfig`); the window is
chosen by the caller: rollout ``steps``, the time range ``start``/``end``, the ``tile`` and whether to normalise.
A sample's channels are read concurrently and normalised in place into one float32 buffer (:meth:`read`).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import xarray as xr

from sciml.errors import UsageError
from sciml.forecasting.tiles import Tile

from .config import DataConfig
from .contract import dynamic_channels, grid_of, segments, static_channels
from .features import resolve_features
from .grid import Grid
from .readers import open_zarr, ordered
from .stats import NormStats

READ_THREADS = 8  # most channels read at once per process (default: one per CPU); zarr decodes their chunks


@dataclass
class _Meta:
    channels: list[str]
    static: list[str]
    grid: Grid
    times: pd.DatetimeIndex
    starts: np.ndarray = field(repr=False)
    window: np.ndarray = field(repr=False)  # [n_samples, history-1 + k+1] time indices, the initial time at history-1


class ForecastDataset(torch.utils.data.Dataset):
    r"""Normalised (input, targets) windows of a canonical store, on one tile. See the module docstring.

    Parameters
    ----------
    cfg
        Store, statistics, channels, static fields, features and ``step_hours`` (the YAML ``data`` section).
    steps
        Targets per sample: :math:`t+\Delta, \dots, t+k\Delta` with :math:`k` = ``steps``.
    start, end
        Inclusive ISO times all of a window's times lie in (``None``: the store's first or last time);
        ``cfg.time_range("train")`` gives a split's.
    tile
        The lat x lon tile read (default: the whole grid).
    normalize
        Normalise with the statistics file (``False``: raw values, no statistics needed).
    features
        Feature objects instead of ``cfg.features`` (:func:`~.features.resolve_features`).
    threads
        Channels read at once (default: one per CPU this process may use, at most :data:`READ_THREADS`).
    history
        States a model step sees (the model's ``input_steps``): with :math:`m > 1` a window also spans the
        :math:`m-1` earlier times and samples hold them as ``previous``; 1 gives the one-state windows.
    """

    def __init__(
        self,
        cfg: DataConfig,
        steps: int = 1,
        *,
        start: str | None = None,
        end: str | None = None,
        tile: Tile | None = None,
        normalize: bool = True,
        features: tuple | None = None,
        threads: int | None = None,
        history: int = 1,
    ) -> None:
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        if history < 1:
            raise ValueError(f"history must be >= 1, got {history}")
        self.cfg = cfg
        self.steps = steps  # targets t+dt .. t+steps*dt
        self.history = history  # states t-(history-1)dt .. t the model sees
        self.start, self.end = start, end
        self.path = Path(cfg.store)
        self._meta = self._scan()
        g = self._meta.grid
        self.tile = tile or Tile.full(g.nlat, g.nlon)
        self.tile.check(g.nlat, g.nlon)
        self.features = features if features is not None else resolve_features(cfg.features)
        self.threads = threads or max(1, min(READ_THREADS, _usable_cpus(), len(self._meta.channels)))
        self.stats: NormStats | None = None
        self._mean: np.ndarray | None = None
        self._std: np.ndarray | None = None
        if normalize:
            self.stats = NormStats.load(cfg.stats_file)
            norm = self.stats.tensors(self._meta.channels)  # float32, as the arithmetic below
            self._mean, self._std = norm["mean"].flatten().numpy(), norm["std"].flatten().numpy()
            if self._meta.static:
                self.stats_static_index = [self._static_index(s) for s in self._meta.static]
        self._arrays: dict | None = None
        self._pool: tuple[int, ThreadPoolExecutor] | None = None
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
        k, back = self.steps, self.history - 1
        lag = pd.Timedelta(hours=self.cfg.step_hours)
        pos = {t: i for i, t in enumerate(times.as_unit("ns").asi8)}
        lo = pd.Timestamp(self.start) if self.start else times[0]
        hi = pd.Timestamp(self.end) if self.end else times[-1]
        windows = []
        for i, t in enumerate(times):
            if t - back * lag < lo or t + k * lag > hi:
                continue
            idx = [pos.get((t + j * lag).value) for j in range(-back, k + 1)]
            if any(x is None for x in idx) or any(seg[x] != seg[i] for x in idx):
                continue
            windows.append(idx)
        if not windows:
            earlier = f" after {back} earlier state(s)" if back else ""
            raise UsageError(
                f"{where}: no window of {k} step(s){earlier} of {self.cfg.step_hours} h fits in {lo} .. {hi}; check "
                "--start/--end, steps and step_hours (a multiple of the store's time step)"
            )
        w = np.asarray(windows, dtype=np.int64)
        return _Meta(chans, stat, grid, times, w[:, back], w)

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
        state["_arrays"] = state["_pool"] = None  # zarr handles and threads are remade in each process
        return state

    def _open(self) -> dict:
        if self._arrays is None:
            import zarr

            group = zarr.open_group(str(self.path), mode="r")
            self._arrays = {c: group[c] for c in self._meta.channels + self._meta.static}
        return self._arrays

    def _threads(self) -> ThreadPoolExecutor:
        # A forked DataLoader worker inherits the parent's pool object but not its threads: one pool per process.
        if self._pool is None or self._pool[0] != os.getpid():
            self._pool = (os.getpid(), ThreadPoolExecutor(self.threads, thread_name_prefix="sciml-read"))
        return self._pool[1]

    def read(self, time_index: np.ndarray | list[int], out: np.ndarray | None = None) -> np.ndarray:
        r"""``[T, C, h, w]`` float32 fields of the tile at store time indices, normalised
        :math:`(x - \mu_c)/\sigma_c` unless the dataset was opened with ``normalize=False``.

        The channels are read concurrently (one task per channel; zarr decodes the chunks of each in its own
        thread pool) and each is written, normalised, straight into ``out`` (allocated when not given): no
        per-sample temporaries of the whole sample. Each channel's thread also checks that its values are finite
        (about 1 % of a sample's CPU time): NaN/inf raise a :class:`UsageError` naming the channels and times, which
        ``sciml data check`` lists for the whole store.
        """
        arrays = self._open()
        ls, xs = self.tile.slices
        idx = np.asarray(time_index, dtype=np.int64)
        chans = self._meta.channels
        # evenly spaced times (every window) as a slice: zarr's basic selection costs ~25% less CPU than orthogonal
        step = int(idx[1] - idx[0]) if len(idx) > 1 else 1
        regular = step > 0 and bool((np.diff(idx) == step).all())
        times = slice(int(idx[0]), int(idx[-1]) + 1, step) if regular else idx
        if out is None:
            out = np.empty((len(idx), len(chans), *self.tile.shape), dtype=np.float32)
        mean, std = self._mean, self._std

        def one(c: int) -> bool:
            a = arrays[chans[c]]
            x = a.get_basic_selection((times, ls, xs)) if regular else a.get_orthogonal_selection((idx, ls, xs))
            dst = out[:, c]
            if mean is None or std is None:
                dst[...] = x
            else:  # the same float32 operations as (x - mean) / std, written into the sample's own memory
                np.subtract(x, mean[c], out=dst, dtype=np.float32)
                np.divide(dst, std[c], out=dst)
            return bool(np.isfinite(dst).all())

        finite = [f.result() for f in [self._threads().submit(one, c) for c in range(len(chans))]]
        if not all(finite):
            self._refuse_nonfinite(out, idx, [c for c, ok in enumerate(finite) if not ok])
        return out

    def _refuse_nonfinite(self, out: np.ndarray, idx: np.ndarray, channels: list[int]) -> None:
        """One line naming the channels (with counts) and times of the NaN/inf values in ``out``."""
        bad = [f"{self._meta.channels[c]} ({int((~np.isfinite(out[:, c])).sum())} values)" for c in channels]
        rows = ~np.isfinite(out[:, channels]).all(axis=tuple(range(1, out.ndim)))
        times = [str(self._meta.times[i]) for i, r in zip(idx, rows, strict=True) if r]
        raise UsageError(
            f"{self.path}: NaN/inf in channel(s) {', '.join(bad)} at {times}; run `sciml data check {self.path}` "
            "and exclude those times (--start/--end) or those channels"
        )

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
        back = self.history - 1
        x = _sample_buffer((len(idx), len(self._meta.channels), *self.tile.shape))
        self.read(idx, out=x.numpy())  # previous states, input and targets are views of this one buffer
        times = self._meta.times[idx[back:]]
        feats = [f(times.values, self.lat, self.lon) for f in self.features]
        ft = torch.from_numpy(np.concatenate(feats, axis=1)) if feats else torch.zeros(len(times), 0, *self.tile.shape)
        sample = {
            "input": x[back],
            "target": x[back + 1 :],
            "static": self._static(),
            "features": ft,
            "time": torch.as_tensor(times.as_unit("ns").asi8),
            "index": torch.tensor(i),
        }
        if back:
            sample["previous"] = x[:back]
        return sample


def _usable_cpus() -> int:
    """CPUs this process may run on (a SLURM or taskset allocation, not the whole node)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else os.cpu_count() or 1


def _sample_buffer(shape: tuple[int, ...]) -> torch.Tensor:
    """An uninitialised float32 tensor; in a ``DataLoader`` worker in shared memory, which the batch is sent
    through, so sending it copies nothing (as ``torch.utils.data.default_collate`` allocates its batches)."""
    if torch.utils.data.get_worker_info() is None:
        return torch.empty(shape, dtype=torch.float32)
    n = int(np.prod(shape))
    storage = torch.UntypedStorage._new_shared(4 * n)
    stride = torch.empty(0).new_empty(shape, device="meta").stride()  # contiguous strides, nothing allocated
    return torch.empty(0, dtype=torch.float32).set_(storage, 0, torch.Size(shape), stride)


def open_canonical(path: str | os.PathLike[str]) -> xr.Dataset:
    """Open a canonical store lazily with xarray (for analysis and scoring code)."""
    return ordered(open_zarr(Path(path)))
