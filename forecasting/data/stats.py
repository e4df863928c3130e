r"""Normalisation statistics with area (quadrature) weights, and a time-of-year climatology for ACC.

For channel :math:`c`, over the time steps :math:`t` of the chosen range and quadrature weights
:math:`w_{ij}` (:meth:`.grid.Grid.quadrature_weights`, summing to 1):

.. math::

    \mu_c = \frac1T\sum_t\sum_{ij} w_{ij}\,x_{c,t,ij},\qquad
    \sigma_c^2 = \frac1T\sum_t\sum_{ij} w_{ij}\,(x_{c,t,ij}-\mu_c)^2,

and the same for the differences :math:`x_{t+\Delta}-x_t` (only pairs inside one trajectory segment and without
missing steps), giving ``diff_mean`` and ``diff_std`` (GraphCast/FCN3's :math:`\sigma_{\Delta t}`). The lag
:math:`\Delta` follows the data: 6 h, or the time step when the data are coarser (12-hourly, daily); a lag that is
not a multiple of the step is refused before the pass. Min and max are pointwise.

The climatology is a harmonic regression fitted per channel and grid point by least squares,

.. math:: \text{clim}_c(d, h) = a_0 + \sum_{k=1}^{K}\big(a_k\cos k\omega d + b_k\sin k\omega d\big)
          + \big(c\cos\tfrac{2\pi h}{24} + s\sin\tfrac{2\pi h}{24}\big),\qquad \omega = \tfrac{2\pi}{365.25},

a smooth, compact alternative to WeatherBench2's (day-of-year, hour) tables: ``(1 + 2K + 2)`` fields per channel
instead of 366 x 24. Only terms the sampling determines are fitted, decided from the time axis before the pass
(:func:`plan_stats`): with less than one year of data the seasonal terms are dropped; a regressor that is a linear
combination of the kept ones on the sampled times is dropped (12-hourly data at 00/12 UTC: :math:`\sin 2\pi h/24
= 0`; daily data: both diurnal terms); dropped terms keep a zero coefficient and are named in the attributes
(``clim_dropped``) and the log.

Everything is written to one NetCDF file beside the store (``swe.zarr`` -> ``swe.stats.nc``) and loaded as
:class:`NormStats`, whose :meth:`NormStats.tensors` gives makani-style ``(1, C, 1, 1)`` tensors.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from sciml.errors import UsageError
from sciml.io import atomic_path
from sciml.progress import NoProgress, Progress

from .contract import grid_of
from .features import harmonic_design
from .readers import Source, source_segments

LOGGER = logging.getLogger(__name__)


def stats_path(store: str | os.PathLike[str]) -> Path:
    """``data/swe.zarr`` -> ``data/swe.stats.nc``."""
    p = Path(store)
    return p.with_name(p.name[: -len(p.suffix)] if p.suffix else p.name).with_suffix(".stats.nc")


@dataclass(frozen=True)
class StatsConfig:
    """What ``sciml data stats`` computes: time range (inclusive, ISO strings), difference lag, climatology."""

    start: str | None = None
    end: str | None = None
    diff_hours: int | None = None  # None: 6 h, or the data's time step if that is longer
    harmonics: int = 3
    diurnal: bool = True
    time_block: int = 64  # at most this many time steps read at once
    memory_bytes: float = 2e9  # budget for the pass's arrays: sets the channel groups and the time block

    def __post_init__(self) -> None:
        if (self.diff_hours is not None and self.diff_hours <= 0) or self.harmonics < 0 or self.time_block < 1:
            raise ValueError("need diff_hours > 0, harmonics >= 0, time_block >= 1")
        if not self.memory_bytes > 0:
            raise ValueError(f"memory must be > 0 bytes, got {self.memory_bytes:g}")


DEFAULT_LAG = pd.Timedelta(hours=6)


@dataclass(frozen=True)
class StatsPlan:
    """What the data's time axis allows, decided before the pass: lag, climatology terms kept and dropped."""

    lag: pd.Timedelta
    harmonics: int
    diurnal: bool
    keep: np.ndarray  # bool [F] over harmonic_design(times, harmonics, diurnal)
    dropped: tuple[str, ...]
    n_pairs: int


def _term_names(harmonics: int, diurnal: bool) -> list[str]:
    names = ["mean"]
    for k in range(1, harmonics + 1):
        names += [f"cos(2pi {k} d/365.25)", f"sin(2pi {k} d/365.25)"]
    return names + (["cos(2pi h/24)", "sin(2pi h/24)"] if diurnal else [])


def _identifiable(X: np.ndarray, rtol: float = 1e-8) -> np.ndarray:
    """Greedy column selection: keep a regressor only if it is not (numerically) a combination of kept ones."""
    keep = np.zeros(X.shape[1], dtype=bool)
    basis = np.zeros((X.shape[0], 0))
    for j in range(X.shape[1]):
        col = X[:, j]
        resid = col - basis @ (basis.T @ col) if basis.shape[1] else col
        norm = float(np.linalg.norm(resid))
        if norm > rtol * max(float(np.linalg.norm(col)), 1e-300) and norm > 0:
            keep[j] = True
            basis = np.column_stack([basis, resid / norm])
    return keep


def plan_stats(times: pd.DatetimeIndex, seg: np.ndarray, use: np.ndarray, cfg: StatsConfig, where: str) -> StatsPlan:
    """Validate the lag and choose the climatology terms from the time axis alone (no data read)."""
    from .contract import time_step

    t = times[use]
    if t.size < 2:
        raise UsageError(
            f"{where}: {t.size} time step(s) in the range; statistics of differences need at least 2 (widen "
            "--start/--end or convert more times)"
        )
    step, _ = time_step(t.values, where=where)
    if cfg.diff_hours is None:
        lag = DEFAULT_LAG if step <= DEFAULT_LAG and DEFAULT_LAG % step == pd.Timedelta(0) else step
    else:
        lag = pd.Timedelta(hours=cfg.diff_hours)
        if lag % step != pd.Timedelta(0):
            raise UsageError(
                f"{where}: --diff-hours {cfg.diff_hours} is not a multiple of the data's time step "
                f"({step / pd.Timedelta(hours=1):g} h); use --diff-hours {step / pd.Timedelta(hours=1):g} (or a "
                "multiple), or leave it out to follow the data"
            )
    ns = times.as_unit("ns").asi8
    index = {v: i for i, v in enumerate(ns)}
    n_pairs = 0
    for g in np.flatnonzero(use):
        j = index.get(ns[g] + lag.value)
        n_pairs += j is not None and bool(use[j]) and seg[j] == seg[g]
    if n_pairs == 0:
        raise UsageError(
            f"{where}: no pair of time steps {lag} apart inside one segment in the range; choose --diff-hours equal "
            f"to the time step ({step})"
        )
    span_days = (t[-1] - t[0]) / pd.Timedelta(days=1)
    harmonics = cfg.harmonics if span_days >= 365 else 0
    dropped = []
    if harmonics != cfg.harmonics:
        dropped.append(f"seasonal harmonics 1..{cfg.harmonics} (need a year of data)")
    X = harmonic_design(t, harmonics, cfg.diurnal)
    keep = _identifiable(X)
    names = _term_names(harmonics, cfg.diurnal)
    dropped += [n for n, k in zip(names, keep, strict=True) if not k]
    diurnal = cfg.diurnal
    if diurnal and not keep[-2:].any():  # neither diurnal term: store none
        keep, diurnal = keep[:-2], False
    if dropped:
        LOGGER.warning(
            "%s: %d step(s) of %s over %.1f days cannot determine the climatology term(s) %s; fitted without them",
            where,
            t.size,
            step,
            span_days,
            ", ".join(dropped),
        )
    return StatsPlan(lag, harmonics, diurnal, keep, tuple(dropped), n_pairs)


@dataclass(frozen=True)
class NormStats:
    """Per-channel statistics (arrays over ``channels``) and the climatology coefficients.

    ``clim`` has shape ``[F, C, nlat, nlon]`` over the dynamic channels; ``static_mean``/``static_std`` are the
    area-weighted mean/std of each static field.
    """

    channels: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray
    diff_mean: np.ndarray
    diff_std: np.ndarray
    min: np.ndarray
    max: np.ndarray
    clim: np.ndarray
    harmonics: int
    diurnal: bool
    static_channels: tuple[str, ...] = ()
    static_mean: np.ndarray | None = None
    static_std: np.ndarray | None = None
    attrs: dict | None = None

    def index(self, channels: tuple[str, ...] | list[str] | None) -> list[int]:
        if channels is None:
            return list(range(len(self.channels)))
        missing = [c for c in channels if c not in self.channels]
        if missing:
            raise UsageError(
                f"no statistics for channel(s) {missing} (stats have {list(self.channels)}); rerun "
                "`sciml data stats` on the store"
            )
        return [self.channels.index(c) for c in channels]

    def tensors(self, channels: tuple[str, ...] | list[str] | None = None, dtype=None) -> dict:
        """``{'mean','std','diff_mean','diff_std','min','max'}`` as ``(1, C, 1, 1)`` torch tensors."""
        import torch

        idx = self.index(channels)
        dtype = dtype or torch.float32
        out = {}
        for k in ("mean", "std", "diff_mean", "diff_std", "min", "max"):
            out[k] = torch.as_tensor(getattr(self, k)[idx], dtype=dtype).reshape(1, len(idx), 1, 1)
        return out

    def climatology(
        self,
        times: np.ndarray | pd.DatetimeIndex,
        channels: tuple[str, ...] | list[str] | None = None,
        tile: tuple[slice, slice] = (slice(None), slice(None)),
    ) -> np.ndarray:
        """Climatology ``[T, C, h, w]`` (float32) at ``times`` for ``channels`` on a lat x lon ``tile``."""
        X = harmonic_design(times, self.harmonics, self.diurnal)  # [T, F]
        coef = self.clim[:, self.index(channels)][..., tile[0], tile[1]]
        return np.einsum("tf,fchw->tchw", X, coef.astype(np.float64)).astype(np.float32)

    def climatology_dataset(self, times: np.ndarray | pd.DatetimeIndex, lat: np.ndarray, lon: np.ndarray) -> xr.Dataset:
        """The climatology as a canonical ``xarray.Dataset`` (time, lat, lon) for xarray scoring code (ACC)."""
        clim = self.climatology(times)
        return xr.Dataset(
            {c: (("time", "lat", "lon"), clim[:, i]) for i, c in enumerate(self.channels)},
            coords={"time": pd.DatetimeIndex(times), "lat": lat, "lon": lon},
        )

    def save(self, path: str | os.PathLike[str]) -> Path:
        ds = xr.Dataset(
            {
                **{k: ("channel", getattr(self, k)) for k in ("mean", "std", "diff_mean", "diff_std", "min", "max")},
                "clim": (("feature", "channel", "lat", "lon"), self.clim.astype(np.float32)),
            },
            coords={"channel": list(self.channels)},
            attrs={**(self.attrs or {}), "harmonics": self.harmonics, "diurnal": int(self.diurnal)},
        )
        if self.static_channels:
            ds = ds.assign_coords(static_channel=list(self.static_channels))
            ds["static_mean"] = ("static_channel", self.static_mean)
            ds["static_std"] = ("static_channel", self.static_std)
        with atomic_path(path) as tmp:
            ds.to_netcdf(tmp, engine="h5netcdf")
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> NormStats:
        p = Path(path)
        if not p.exists():
            raise UsageError(f"{p}: no statistics file; run `sciml data stats STORE` first")
        with xr.open_dataset(p, engine="h5netcdf") as ds:
            ds = ds.load()
        attrs = dict(ds.attrs)
        st = tuple(map(str, ds["static_channel"].values)) if "static_channel" in ds.coords else ()
        return cls(
            channels=tuple(map(str, ds["channel"].values)),
            **{k: ds[k].values.astype(np.float64) for k in ("mean", "std", "diff_mean", "diff_std", "min", "max")},
            clim=ds["clim"].values,
            harmonics=int(attrs.pop("harmonics")),
            diurnal=bool(attrs.pop("diurnal")),
            static_channels=st,
            static_mean=ds["static_mean"].values if st else None,
            static_std=ds["static_std"].values if st else None,
            attrs=attrs,
        )


def _time_mask(times: pd.DatetimeIndex, cfg: StatsConfig) -> np.ndarray:
    m = np.ones(times.size, dtype=bool)
    if cfg.start:
        m &= times >= pd.Timestamp(cfg.start)
    if cfg.end:
        m &= times <= pd.Timestamp(cfg.end)
    return m


class _Moments:
    """Quadrature-weighted first and second moments per channel (shifted, for accuracy), min and max."""

    def __init__(self, channels: int, weights: np.ndarray) -> None:
        self.w = weights
        self.s1, self.s2 = np.zeros(channels), np.zeros(channels)
        self.lo, self.hi = np.full(channels, np.inf), np.full(channels, -np.inf)
        self.shift: np.ndarray | None = None
        self.n = 0

    def add(self, x: np.ndarray) -> None:
        """``x`` ``[T, C, H, W]``."""
        if self.shift is None:
            self.shift = np.einsum("cij,ij->c", x[0], self.w)  # shifted sums keep the variance accurate
        xs = x - self.shift[None, :, None, None]
        self.s1 += np.einsum("tcij,ij->c", xs, self.w)
        self.s2 += np.einsum("tcij,ij->c", xs * xs, self.w)
        self.n += x.shape[0]
        self.lo = np.minimum(self.lo, x.min(axis=(0, 2, 3)))
        self.hi = np.maximum(self.hi, x.max(axis=(0, 2, 3)))

    def mean_std(self) -> tuple[np.ndarray, np.ndarray]:
        assert self.shift is not None  # set by the first block (an empty selection was refused before the pass)
        mean_s = self.s1 / self.n
        return mean_s + self.shift, np.sqrt(np.maximum(self.s2 / self.n - mean_s**2, 0.0))


class _Differences:
    """Quadrature-weighted mean and std of lagged differences per channel."""

    def __init__(self, channels: int, weights: np.ndarray) -> None:
        self.w = weights
        self.d1, self.d2 = np.zeros(channels), np.zeros(channels)
        self.n = 0

    def add(self, dx: np.ndarray) -> None:
        """``dx`` ``[C, H, W]``."""
        self.d1 += np.einsum("cij,ij->c", dx, self.w)
        self.d2 += np.einsum("cij,ij->c", dx * dx, self.w)
        self.n += 1

    def mean_std(self) -> tuple[np.ndarray, np.ndarray]:
        mean = self.d1 / self.n
        return mean, np.sqrt(np.maximum(self.d2 / self.n - mean**2, 0.0))


class _HarmonicFit:
    """Normal equations of the climatology regression, accumulated block by block: ``G = X^T X``, ``R = X^T x``."""

    def __init__(self, terms: int, channels: int, nlat: int, nlon: int) -> None:
        self.G = np.zeros((terms, terms))
        self.R = np.zeros((terms, channels, nlat, nlon))

    def add(self, X: np.ndarray, x: np.ndarray) -> None:
        """Design ``X`` ``[T, F]`` and fields ``x`` ``[T, C, H, W]``."""
        self.G += X.T @ X
        for f in range(X.shape[1]):  # term by term: a temporary of one term's size, not all of R's
            self.R[f] += np.tensordot(X[:, f], x, axes=(0, 0))

    def solve(self, keep: np.ndarray) -> np.ndarray:
        """Coefficients ``[F, C, H, W]``; terms not kept (undetermined by the sampling) stay zero."""
        kept = np.flatnonzero(keep)
        coef = np.zeros(self.R.shape)
        solved = np.linalg.solve(self.G[np.ix_(kept, kept)], self.R[kept].reshape(kept.size, -1))
        coef[kept] = solved.reshape((kept.size, *self.R.shape[1:]))
        return coef


#: Float64 fields per channel a one-step pass holds besides the climatology terms, and per extra step of a block
#: (measured: 21 channels of 721 x 1440 took 4.3 GB above the process's 1.2 GB with one-step blocks).
PER_CHANNEL_FIELDS = 21
STEP_FIELDS = 6


def stats_blocking(channels: int, points: int, terms: int, cfg: StatsConfig) -> tuple[int, int]:
    """``(channels per pass, time steps per block)`` whose float64 arrays fit ``cfg.memory_bytes``.

    A pass over ``g`` channels with blocks of ``b`` steps holds, per channel, the climatology's normal equations
    (``terms`` fields) and per step of the block the fields read, stacked, selected, shifted and squared, a
    difference pair, and what the allocator keeps of freed temporaries: ``PER_CHANNEL_FIELDS + terms`` fields of
    ``points`` float64 values with one-step blocks, ``STEP_FIELDS`` more per extra step. The constants are measured
    (``bench/stats_memory.py``: 0.25 degree, 72 channels). Channels are independent, so groups give the same
    numbers as one pass.
    """
    field = 8.0 * points
    g = int(max(1, min(channels, cfg.memory_bytes // (field * (PER_CHANNEL_FIELDS + terms)))))
    spare = cfg.memory_bytes / field - g * (PER_CHANNEL_FIELDS + terms)
    b = int(max(1, min(cfg.time_block, 1 + spare // (STEP_FIELDS * g))))
    return g, b


def _check_finite(x: np.ndarray, chans: list[str], where: str, t0: pd.Timestamp, t1: pd.Timestamp) -> None:
    if not np.isfinite(x).all():  # inf would give mean inf and std nan
        bad = [chans[c] for c in range(len(chans)) if not np.isfinite(x[:, c]).all()]
        raise UsageError(
            f"{where}: NaN/inf values in {bad} between {t0} and {t1}; run "
            "`sciml data check` and restrict the time range (--start/--end) or fix the source"
        )


def compute_stats(src: Source, cfg: StatsConfig = StatsConfig(), progress: Progress | None = None) -> NormStats:
    """Stream over ``src`` and return its :class:`NormStats` (see module docstring for the equations).

    Memory is bounded by ``cfg.memory_bytes`` plus the output: channels are processed in groups and time in blocks
    sized by :func:`stats_blocking` (a 0.25-degree store with 72 channels takes several passes, each reading only
    its channels; the numbers do not depend on the grouping), and the climatology, ``terms x C`` float32 fields
    (0.9 GB for 72 channels at 0.25 degree with the mean and diurnal terms, 2.7 GB with 3 annual harmonics too),
    is filled group by group.
    """
    progress = progress or NoProgress()
    where = str(src.path)
    if "member" in src.parts[0].dims:
        raise UsageError(
            f"{where} keeps {src.parts[0].sizes['member']} ensemble members; statistics need one trajectory: "
            "convert with --member N"
        )
    grid = grid_of(src.parts[0], where=where)
    w = grid.quadrature_weights()
    chans = list(src.channels)
    times = src.times
    seg = source_segments(src)
    use = _time_mask(times, cfg)
    if not use.any():
        raise UsageError(f"{where}: no time steps between {cfg.start} and {cfg.end} ({times[0]} .. {times[-1]})")
    plan = plan_stats(times, seg, use, cfg, where)
    terms = 1 + 2 * plan.harmonics + 2 * int(plan.diurnal)
    group, block = stats_blocking(len(chans), grid.nlat * grid.nlon, terms, cfg)
    groups = [chans[i : i + group] for i in range(0, len(chans), group)]
    if len(groups) > 1:
        LOGGER.info("statistics in %d passes of %d channel(s), %d step(s) per block", len(groups), group, block)
    # the climatology is the one output as large as the data's fields: kept in float32 from the first group on
    clim = np.zeros((terms, len(chans), grid.nlat, grid.nlon), dtype=np.float32)
    moments, diffs = [], []
    progress.start(int(use.sum()) * len(groups), "statistics")
    try:
        for i, g in enumerate(groups):
            m, d, coef = _group_stats(src, g, w, use, seg, plan, block, progress)
            clim[:, i * group : i * group + len(g)] = coef
            moments.append(m)
            diffs.append(d)
            del coef
    finally:
        progress.close()
    means, stds = zip(*(m.mean_std() for m in moments), strict=True)
    dmeans, dstds = zip(*(d.mean_std() for d in diffs), strict=True)
    st_names: tuple[str, ...] = ()
    st_mean = st_std = None
    if src.static is not None and src.static_channels:
        st_names = tuple(src.static_channels)
        vals = [src.static[c].values.astype(np.float64) for c in st_names]
        st_mean = np.array([(v * w).sum() for v in vals])
        st_std = np.array([np.sqrt((((v - m) ** 2) * w).sum()) for v, m in zip(vals, st_mean, strict=True)])
    harmonics, diurnal = plan.harmonics, plan.diurnal
    attrs = {
        "start": str(times[use][0]),
        "end": str(times[use][-1]),
        "n_samples": moments[0].n,
        "n_diff_pairs": diffs[0].n,
        "diff_hours": plan.lag / pd.Timedelta(hours=1),
        "clim_terms": ", ".join(n for n, kk in zip(_term_names(harmonics, diurnal), plan.keep, strict=True) if kk),
        "clim_dropped": ", ".join(plan.dropped) or "none",
        "grid": grid.describe(),
        "weights": "clenshaw-curtis" if grid.kind == "equiangular" else "gauss-legendre",
        "source": str(src.path),
    }
    return NormStats(
        channels=tuple(chans),
        mean=np.concatenate(means),
        std=np.concatenate(stds),
        diff_mean=np.concatenate(dmeans),
        diff_std=np.concatenate(dstds),
        min=np.concatenate([m.lo for m in moments]),
        max=np.concatenate([m.hi for m in moments]),
        clim=clim,
        harmonics=harmonics,
        diurnal=diurnal,
        static_channels=st_names,
        static_mean=st_mean,
        static_std=st_std,
        attrs=attrs,
    )


def _group_stats(
    src: Source,
    chans: list[str],
    w: np.ndarray,
    use: np.ndarray,
    seg: np.ndarray,
    plan: StatsPlan,
    block: int,
    progress: Progress,
) -> tuple[_Moments, _Differences, np.ndarray]:
    """One pass over the selected times for the channels ``chans``: moments, differences, climatology."""
    times = src.times
    C = len(chans)
    nlat, nlon = w.shape
    moments, diffs = _Moments(C, w), _Differences(C, w)
    fit = _HarmonicFit(1 + 2 * plan.harmonics + 2 * int(plan.diurnal), C, nlat, nlon)
    tindex = {t: i for i, t in enumerate(times.as_unit("ns").asi8)}
    offset = 0
    for part in src.parts:
        pt = pd.DatetimeIndex(part["time"].values)
        for i0 in range(0, pt.size, block):
            i1 = min(pt.size, i0 + block)
            gi = np.arange(offset + i0, offset + i1)
            sel = use[gi]
            if not sel.any():
                continue
            xb = np.stack([part[c].isel(time=slice(i0, i1)).values for c in chans], axis=1).astype(np.float64)
            x = xb[sel]
            _check_finite(x, chans, str(src.path), pt[i0], pt[i1 - 1])
            moments.add(x)
            fit.add(harmonic_design(pt[i0:i1][sel], plan.harmonics, plan.diurnal), x)
            # differences x(t + lag) - x(t): partner looked up by time over the whole source
            for k, g in enumerate(gi[sel]):
                j = tindex.get((times[g] + plan.lag).value)
                if j is None or not use[j] or seg[j] != seg[g]:
                    continue
                if offset + i0 <= j < offset + i1:
                    partner = xb[j - offset - i0]
                else:
                    partner = _load_step(src, j, chans)
                diffs.add(partner - x[k])
            progress.update(int(sel.sum()))
        offset += pt.size
    return moments, diffs, fit.solve(plan.keep)


def _load_step(src: Source, j: int, chans: list[str]) -> np.ndarray:
    """Fields of global time index ``j`` as ``[C, nlat, nlon]`` float64."""
    for part in src.parts:
        n = part.sizes["time"]
        if j < n:
            return np.stack([part[c].isel(time=j).values for c in chans]).astype(np.float64)
        j -= n
    raise IndexError(j)
