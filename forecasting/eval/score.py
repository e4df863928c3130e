r"""Scoring of ensemble forecasts against a truth store, with persistence and climatology baselines.

For every channel and lead time :math:`\tau`, over the cases (initial times :math:`t_0` whose verification time
:math:`t_0+\tau` is in the truth store), with WeatherBench 2's area weights and time averaging *before* square
roots (:mod:`sciml.forecasting.eval.metrics`):

* ``crps``: fair ensemble CRPS; ``rmse``: RMSE of the ensemble mean; ``spread``: root of the mean ddof=1
  member variance; ``ssr = spread / rmse`` (WB2) and ``ssr_corrected`` :math:`= \sqrt{(M+1)/M}\,` ``ssr``
  (tends to 1 for a perfect ``M``-member ensemble); ``acc`` of the ensemble mean against the climatology;
  ``rank_histogram`` (M+1 bins, pooled over cases and grid points);
* ``*_persistence``: the analysis at :math:`t_0` as a deterministic forecast (its CRPS is the MAE);
* ``*_climatology``: the smooth climatological mean of the statistics file (deterministic, CRPS = MAE);
* ``*_climatology_ensemble``: a probabilistic climatology of ``M`` truth states at the same hour and within
  ``window_days`` of the same day of year, drawn from the climatology period (default: the training period of
  the forecast's checkpoint), as in WB2's probabilistic climatology baseline;
* ``*_physics``: on stores written by ``sciml data synth``, the perfect-model ensemble of ``M`` members (the
  generator's dynamics from the exact initial state, independent forcing streams; :mod:`.physics`), scored with
  the same metrics as the model (``crps``, ``rmse``, ``spread``, ``ssr``, ``ssr_corrected``);
  ``*_physics_deterministic``: the generator's dynamics without forcing (deterministic, CRPS = MAE);
* ``crps_cases``, ``crps_*_cases``: the CRPS of every case (dimension ``init_time``; NaN where the lead cannot be
  verified), whose mean over cases is ``crps``: what bootstrap intervals over cases resample
  (:mod:`.bootstrap`);
* ``psd_truth``, ``psd_member``, ``psd_ensmean``: angular power spectra :math:`P(l)` averaged over cases (and
  members), to check that single members keep the truth's small-scale variance.

Which baselines are computed is :attr:`ScoreConfig.baselines` (persistence, climatology, physics; physics costs
``cases x (M+1)`` runs of the generator and only exists for synth stores, so it is not in the default).

Only one lead time of the forecast is held in memory at a time.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from sciml.errors import UsageError
from sciml.io import atomic_path
from sciml.progress import NoProgress, Progress

LOGGER = logging.getLogger(__name__)
FC_DIMS = ("time", "prediction_timedelta", "realization", "lat", "lon")
#: Baselines ``sciml forecast score --baselines`` knows; :data:`DEFAULT_BASELINES` are computed unless told.
BASELINES = ("persistence", "climatology", "physics")
DEFAULT_BASELINES = ("persistence", "climatology")


def parse_baselines(text: str) -> tuple[str, ...]:
    """``"persistence,physics"`` -> ``("persistence", "physics")``; a usage error for an unknown name."""
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in BASELINES]
    if unknown:
        raise UsageError(f"unknown baseline(s) {unknown}; choose from {','.join(BASELINES)} (comma-separated)")
    return names


@dataclass(frozen=True)
class ScoreConfig:
    """Inputs of ``sciml forecast score``."""

    forecast: Path
    truth: Path
    out: Path = Path("scores.nc")
    stats: Path | None = None  # climatological mean; default: TRUTH.stats.nc
    clim_start: str | None = None  # probabilistic climatology period; default: the checkpoint's training period
    clim_end: str | None = None
    window_days: float = 15.0
    seed: int = 0
    baselines: tuple[str, ...] = DEFAULT_BASELINES  # any of BASELINES
    physics_threads: int | None = None  # torch threads of the physics runs (default: the current setting)

    def __post_init__(self) -> None:
        parse_baselines(",".join(self.baselines))


def open_forecast(path: str | os.PathLike[str]) -> xr.Dataset:
    """Open a forecast store and check the WB2 forecast layout."""
    p = Path(path)
    if not p.exists():
        raise UsageError(f"forecast {p} does not exist; write one with `sciml forecast infer`")
    try:
        ds = xr.open_zarr(p, consolidated=False)
    except Exception as exc:  # zarr raises several types for a folder that is not a store
        raise UsageError(f"{p} is not a zarr forecast store ({type(exc).__name__}: {exc})") from None
    if not ds.data_vars:
        raise UsageError(f"{p} holds no forecast variables")
    for name, v in ds.data_vars.items():
        if tuple(v.dims) != FC_DIMS:
            raise UsageError(f"{p}: variable {name!r} has dims {v.dims}; expected the WB2 forecast layout {FC_DIMS}")
    return ds


def _clim_candidates(truth_times: pd.DatetimeIndex, start, end) -> np.ndarray:
    m = np.ones(truth_times.size, dtype=bool)
    if start is not None:
        m &= truth_times >= pd.Timestamp(start)
    if end is not None:
        m &= truth_times <= pd.Timestamp(end)
    return np.flatnonzero(m)


def _count_nonfinite_truth(
    y: xr.Dataset, channels: list[str], where: Any, masked: dict[str, list], times: pd.DatetimeIndex
) -> None:
    """Refuse +-inf in the truth; count NaN (left out of the scores) per channel with the first valid time."""
    for c in channels:
        v = y[c].values
        inf = np.isinf(v)
        if inf.any():
            t = times[inf.any(axis=(1, 2))]
            raise UsageError(
                f"truth store {where}: {int(inf.sum())} infinite value(s) in {c} at {[str(x) for x in t[:3]]}; "
                "fix the store (`sciml data check` lists them)"
            )
        nan = np.isnan(v)
        if nan.any():
            t = times[nan.any(axis=(1, 2))]
            entry = masked.setdefault(c, [0, str(t[0])])
            entry[0] += int(nan.sum())


def climatology_members(
    truth_times: pd.DatetimeIndex,
    candidates: np.ndarray,
    valid: pd.Timestamp,
    members: int,
    window_days: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Indices of ``members`` truth states at ``valid``'s hour within ``window_days`` of its day of year."""
    ct = truth_times[candidates]
    same_hour = ct.hour == valid.hour
    d = np.abs((ct.day_of_year - valid.day_of_year).to_numpy())
    d = np.minimum(d, 365 - d)
    # never the verifying state or its own weather regime: at least 10 days away from the valid time
    far = np.abs((ct - valid) / pd.Timedelta(days=1)) > 10
    pool = candidates[same_hour & (d <= window_days) & far]
    if pool.size < members:
        pool = candidates[same_hour & far]
    if pool.size < 2:
        return np.zeros(0, dtype=np.int64)
    return np.sort(rng.choice(pool, size=min(members, pool.size), replace=False))


def _det_scores(f: xr.DataArray, y: xr.DataArray, name: str) -> dict[str, xr.DataArray]:
    """CRPS (= MAE: the CRPS of a single value), its per-case values and RMSE of a deterministic forecast."""
    from sciml.forecasting.eval.metrics import rmse, spatial_mean

    mae = spatial_mean(abs(f - y))
    rms = rmse(f, y, mean_dims=("time",))
    return {f"crps_{name}": mae.mean("time"), f"crps_{name}_cases": mae, f"rmse_{name}": rms}


def _ensemble_scores(fe: xr.DataArray, y: xr.DataArray, suffix: str = "") -> dict[str, xr.DataArray]:
    """The ensemble scores of the module docstring (``crps``, ``rmse``, ``spread``, ``ssr``...) of ``fe`` against
    ``y``, each key ending in ``suffix``: one code path for the model and the ensemble baselines."""
    from sciml.forecasting.eval import metrics as M

    m = fe.sizes["realization"]
    kw = {"mean_dims": ("time",)}
    cases = M.crps(fe, y) if m > 1 else M.spatial_mean(abs(fe.isel(realization=0) - y))
    row = {"crps": cases.mean("time"), "crps_cases": cases, "rmse": M.ensemble_mean_rmse(fe, y, **kw)}
    if m > 1:
        row["spread"] = M.spread(fe, **kw)
        row["ssr"] = row["spread"] / row["rmse"]
        row["ssr_corrected"] = row["ssr"] * np.sqrt((m + 1) / m)
    return {_suffixed(k, suffix): v for k, v in row.items()}


def _suffixed(key: str, suffix: str) -> str:
    """``crps_cases`` + ``_physics`` -> ``crps_physics_cases``; other keys get the suffix at the end."""
    if not suffix:
        return key
    return f"crps{suffix}_cases" if key == "crps_cases" else key + suffix


@dataclass
class _Inputs:
    """The forecast and truth of a scoring run, checked against each other, with what every lead needs."""

    cfg: ScoreConfig
    fc: xr.Dataset
    truth: xr.Dataset
    channels: list[str]
    stats: Any  # NormStats or None
    inits: pd.DatetimeIndex
    ttimes: pd.DatetimeIndex
    tpos: dict[int, int]  # truth time (ns) -> index
    persist: xr.Dataset
    physics: Any  # PhysicsEnsemble or None
    clim_period: tuple[str | None, str | None]
    candidates: np.ndarray
    rng: np.random.Generator

    @property
    def members(self) -> int:
        return int(self.fc.sizes["realization"])


def _open_inputs(cfg: ScoreConfig) -> _Inputs:
    """Open forecast, truth and statistics; refuse what cannot be scored (missing channels, another grid, initial
    times not in the truth) with one line each."""
    from sciml.forecasting.data import NormStats, stats_path
    from sciml.forecasting.data.dataset import open_canonical

    fc = open_forecast(cfg.forecast)
    if not Path(cfg.truth).exists():
        raise UsageError(f"truth store {cfg.truth} does not exist")
    truth = open_canonical(cfg.truth)
    channels = [str(c) for c in fc.data_vars]
    if str(fc.attrs.get("antithetic", 0)) in ("1", "True"):
        # The fair CRPS and the spread treat members as independent draws; antithetic partners are
        # anti-correlated, so both overstate the spread (forecasting/losses.py, "Antithetic ensembles").
        LOGGER.warning(
            "%s has antithetic member pairs: CRPS, spread and SSR assume independent members and overstate the "
            "spread; infer without --antithetic for scores",
            cfg.forecast,
        )
    missing = [c for c in channels if c not in truth.data_vars]
    if missing:
        raise UsageError(f"truth store {cfg.truth} lacks channel(s) {missing}")
    if truth.sizes["lat"] != fc.sizes["lat"] or truth.sizes["lon"] != fc.sizes["lon"]:
        raise UsageError(
            f"forecast grid {fc.sizes['lat']}x{fc.sizes['lon']} differs from the truth grid "
            f"{truth.sizes['lat']}x{truth.sizes['lon']}"
        )
    if not np.allclose(truth["lat"].values, fc["lat"].values, atol=1e-6):
        raise UsageError("forecast and truth latitudes differ (orientation or grid); both must be canonical")
    stats = None
    spath = Path(cfg.stats) if cfg.stats else stats_path(cfg.truth)
    if spath.exists():
        stats = NormStats.load(spath)
    elif cfg.stats:
        raise UsageError(f"statistics file {spath} does not exist")
    inits = pd.DatetimeIndex(fc["time"].values)
    ttimes = pd.DatetimeIndex(truth["time"].values)
    tpos = {t: i for i, t in enumerate(ttimes.as_unit("ns").asi8)}
    init_idx = [tpos.get(t.as_unit("ns").value) for t in inits]
    if any(i is None for i in init_idx):
        raise UsageError(
            f"initial times {[str(t) for t, i in zip(inits, init_idx, strict=True) if i is None]} "
            f"are not in the truth store {cfg.truth}; persistence needs the analysis at t0"
        )
    physics = None
    if "physics" in cfg.baselines:
        from sciml.forecasting.eval.physics import PhysicsEnsemble

        m = int(fc.sizes["realization"])
        physics = PhysicsEnsemble(truth, inits, m, channels, cfg.seed, cfg.truth, cfg.physics_threads)
    start = cfg.clim_start or _attr(fc, "train_start")
    end = cfg.clim_end or _attr(fc, "train_end")
    return _Inputs(
        cfg=cfg,
        fc=fc,
        truth=truth,
        channels=channels,
        stats=stats,
        inits=inits,
        ttimes=ttimes,
        tpos=tpos,
        persist=truth[channels].isel(time=init_idx).load().assign_coords(time=inits),
        physics=physics,
        clim_period=(start, end),
        candidates=_clim_candidates(ttimes, start, end),
        rng=np.random.default_rng(cfg.seed),
    )


def score_forecast(cfg: ScoreConfig, progress: Progress | None = None) -> xr.Dataset:
    """Compute the scores of the module docstring and write them to ``cfg.out`` (NetCDF); returns the dataset."""
    progress = progress or NoProgress()
    inp = _open_inputs(cfg)
    leads = inp.fc["prediction_timedelta"].values
    per_lead: list[xr.Dataset] = []
    masked: dict[str, list] = {}
    runs = f" (physics: {len(inp.inits)} x {inp.members + 1} runs)" if inp.physics else ""
    progress.start(len(leads), "scoring" + runs)
    try:
        for j, lead in enumerate(leads):
            lead_ds = _score_lead(inp, j, lead, masked)
            if lead_ds is not None:
                per_lead.append(lead_ds)
                progress.update(1)
    finally:
        progress.close()
        inp.truth.close()
    for c, (n, first) in masked.items():
        LOGGER.warning(
            "truth store %s: %d NaN value(s) of %s at verification times (first %s) are left out of the scores",
            cfg.truth,
            n,
            c,
            first,
        )
    if not per_lead:
        raise UsageError(
            f"no forecast lead time can be verified: the truth store {cfg.truth} has none of the valid times"
        )
    res = _assemble(inp, per_lead)
    with atomic_path(cfg.out) as tmp:
        res.to_netcdf(tmp, engine="h5netcdf")
    return res


def _score_lead(inp: _Inputs, j: int, lead: np.timedelta64, masked: dict[str, list]) -> xr.Dataset | None:
    """Every score of lead ``j`` on the cases it can be verified on (``None`` when there is none), with the
    cases on one ``init_time`` axis (NaN where this lead cannot be verified), so that leads concatenate exactly."""
    cfg, channels = inp.cfg, inp.channels
    valid = inp.inits + pd.Timedelta(lead)
    vidx = [inp.tpos.get(t.as_unit("ns").value) for t in valid]
    cases = [i for i, v in enumerate(vidx) if v is not None]
    if not cases:
        LOGGER.warning("lead %s: no verification time in the truth store; skipped", pd.Timedelta(lead))
        return None
    f = inp.fc.isel(prediction_timedelta=j, time=cases).load()
    y = inp.truth[channels].isel(time=[vidx[i] for i in cases]).load().assign_coords(time=f["time"].values)
    _count_nonfinite_truth(y, channels, cfg.truth, masked, valid[cases])
    physics = None
    if inp.physics is not None:
        physics = tuple(a[cases] for a in inp.physics.advance(pd.Timedelta(lead)))
    out = {
        c: _channel_scores(inp, c, f[c], y[c], inp.persist.isel(time=cases)[c], valid[cases], physics) for c in channels
    }
    if inp.members > 1 and inp.candidates.size >= 2 and "climatology" in cfg.baselines:
        _climatology_ensemble_scores(inp, out, y, valid, cases)
    names = list(dict.fromkeys(k for r in out.values() for k in r))
    lead_ds = xr.Dataset(
        {
            k: xr.concat([_plain(out[c][k]) for c in channels], dim=pd.Index(channels, name="channel"))
            for k in names
            if all(k in out[c] for c in channels)
        }
    )
    lead_ds = lead_ds.rename(time="init_time").reindex(init_time=inp.inits.values)
    lead_ds["n_cases"] = len(cases)
    return lead_ds.expand_dims(prediction_timedelta=[lead])


def _channel_scores(
    inp: _Inputs,
    c: str,
    fe: xr.DataArray,
    yc: xr.DataArray,
    persisted: xr.DataArray,
    valid: pd.DatetimeIndex,
    physics: tuple[np.ndarray, np.ndarray] | None,
) -> dict[str, xr.DataArray]:
    """The model's scores of channel ``c`` at one lead and those of the asked-for baselines on the same cases."""
    from sciml.forecasting.eval import metrics as M

    cfg = inp.cfg
    kw = {"mean_dims": ("time",)}
    row = _ensemble_scores(fe, yc)
    if inp.members > 1:
        row["rank_histogram"] = M.rank_histogram(fe, yc, reduce_dims=["time", "lat", "lon"], seed=cfg.seed)
    if "persistence" in cfg.baselines:
        row.update(_det_scores(persisted, yc, "persistence"))
    clim = None
    if inp.stats is not None and c in inp.stats.channels:
        clim = xr.DataArray(inp.stats.climatology(valid, [c])[:, 0], dims=yc.dims, coords=yc.coords)
        row["acc"] = M.acc(fe.mean("realization"), yc, clim, **kw)
    if clim is not None and "climatology" in cfg.baselines:
        row.update(_det_scores(clim, yc, "climatology"))
    if clim is not None and "persistence" in cfg.baselines:
        row["acc_persistence"] = M.acc(persisted, yc, clim, **kw)
    if physics is not None:
        ens, det = physics
        k = inp.channels.index(c)
        row.update(_ensemble_scores(fe.copy(data=ens[:, :, k]), yc, "_physics"))
        row.update(_det_scores(yc.copy(data=det[:, k]), yc, "physics_deterministic"))
    spec = M.angular_power_spectrum
    row["psd_truth"] = spec(yc).mean("time")
    row["psd_member"] = spec(fe).mean(("time", "realization"))
    row["psd_ensmean"] = spec(fe.mean("realization")).mean("time")
    return row


def _climatology_ensemble_scores(
    inp: _Inputs, out: dict[str, dict], y: xr.Dataset, valid: pd.DatetimeIndex, cases: list[int]
) -> None:
    """The probabilistic climatology (members = truth states near the valid date in the climatology period),
    scored into ``out`` when every case has enough candidates."""
    from sciml.forecasting.eval import metrics as M

    m, cfg = inp.members, inp.cfg
    members = [climatology_members(inp.ttimes, inp.candidates, valid[i], m, cfg.window_days, inp.rng) for i in cases]
    if not all(len(a) == m for a in members):
        return
    for c in inp.channels:
        ens = np.stack([inp.truth[c].isel(time=a).values for a in members])  # [T, M, H, W]
        ce = xr.DataArray(ens, dims=("time", "realization", "lat", "lon"), coords=y[c].coords)
        cases_crps = M.crps(ce, y[c])
        out[c]["crps_climatology_ensemble"] = cases_crps.mean("time")
        out[c]["crps_climatology_ensemble_cases"] = cases_crps
        out[c]["rmse_climatology_ensemble"] = M.ensemble_mean_rmse(ce, y[c], mean_dims=("time",))


def _assemble(inp: _Inputs, per_lead: list[xr.Dataset]) -> xr.Dataset:
    """The leads on one ``prediction_timedelta`` axis, with lead hours, units and the run's provenance."""
    cfg = inp.cfg
    res = xr.concat(per_lead, dim="prediction_timedelta")
    res = res.assign_coords(
        lead_hours=("prediction_timedelta", res["prediction_timedelta"].values / np.timedelta64(1, "h"))
    )
    res["units"] = ("channel", [str(inp.truth[c].attrs.get("units", "")) for c in inp.channels])
    start, end = inp.clim_period
    res.attrs.update(
        forecast=str(cfg.forecast),
        truth=str(cfg.truth),
        members=inp.members,
        baselines=",".join(cfg.baselines),
        climatology_period=f"{start} .. {end}",
        climatology_window_days=cfg.window_days,
        ssr_definition="spread / ensemble-mean RMSE (WB2); ssr_corrected multiplies by sqrt((M+1)/M)",
    )
    return res


def _attr(ds: xr.Dataset, key: str) -> str | None:
    v = ds.attrs.get(key)
    return None if v in (None, "None", "") else str(v)


def _plain(da: xr.DataArray) -> xr.DataArray:
    """Drop scalar leftovers (e.g. the lead coordinate of the selection) before concatenation."""
    return da.drop_vars([c for c in da.coords if c not in da.dims], errors="ignore")


def format_table(scores: xr.Dataset, leads_hours: list[float] | None = None) -> str:
    """A plain-text table: per channel and lead, model CRPS vs baselines and the spread-skill ratio."""
    cols = [
        ("crps", "CRPS"),
        ("crps_persistence", "persist"),
        ("crps_climatology", "clim"),
        ("crps_climatology_ensemble", "clim-ens"),
        ("crps_physics", "physics"),
        ("crps_physics_deterministic", "phys-det"),
        ("rmse", "RMSE"),
        ("ssr", "SSR"),
        ("ssr_corrected", "SSRc"),
    ]
    cols = [(k, t) for k, t in cols if k in scores]
    lines = [f"{'channel':<8} {'lead':>6} " + " ".join(f"{t:>10}" for _, t in cols)]
    hours = scores["lead_hours"].values
    for c in scores["channel"].values:
        for j, h in enumerate(hours):
            if leads_hours is not None and h not in leads_hours:
                continue
            vals = " ".join(f"{float(scores[k].sel(channel=c).isel(prediction_timedelta=j)):10.4g}" for k, _ in cols)
            lines.append(f"{c:<8} {h:>5g}h {vals}")
    return "\n".join(lines)
