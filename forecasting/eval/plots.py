"""Forecast verification plots (matplotlib, Agg backend; PNG by default).

* :func:`plot_skill`: CRPS, ensemble-mean RMSE (with the persistence, climatology and, where scored, the
  perfect-model ``physics`` baselines) and spread-skill ratio against lead time, one column per channel;
* :func:`plot_rank_histograms`: normalised rank histograms at a few leads (flat = calibrated);
* :func:`plot_spectra`: angular power spectra :math:`P(l)` of truth, single members and the ensemble mean at
  several leads, log-log, per channel;
* :func:`plot_maps`: truth, ensemble mean, ensemble spread and one member for one case and lead.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from sciml.errors import UsageError
from sciml.io import atomic_path

LOGGER = logging.getLogger(__name__)


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path, dpi: int = 110) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=path.suffix.lstrip(".") or "png")
    _plt().close(fig)
    return path


def _units(scores: xr.Dataset, c: str) -> str:
    return str(scores["units"].sel(channel=c).item()) if "units" in scores else ""


def pick_leads(hours: np.ndarray, n: int = 4) -> list[int]:
    """Indices of ``n`` leads spread over the range (first, ..., last)."""
    if hours.size <= n:
        return list(range(hours.size))
    return sorted({int(round(x)) for x in np.linspace(0, hours.size - 1, n)})


def plot_skill(scores: xr.Dataset, out: Path) -> Path:
    """CRPS, RMSE and SSR vs lead (days), model solid, baselines dashed/dotted."""
    plt = _plt()
    chans = [str(c) for c in scores["channel"].values]
    days = scores["lead_hours"].values / 24.0
    rows = [("crps", "CRPS"), ("rmse", "ensemble-mean RMSE"), ("ssr", "spread / skill")]
    fig, axes = plt.subplots(
        len(rows), len(chans), figsize=(4.4 * len(chans), 3.3 * len(rows)), squeeze=False, layout="constrained"
    )
    styles = {
        "persistence": ("tab:gray", "--"),
        "climatology": ("tab:green", ":"),
        "climatology_ensemble": ("tab:olive", "-."),
        "physics": ("tab:red", "-"),  # the perfect-model ensemble: the bound, not a baseline to beat
        "physics_deterministic": ("tab:orange", "--"),
    }
    for j, c in enumerate(chans):
        s = scores.sel(channel=c)
        u = _units(scores, c)
        for i, (key, label) in enumerate(rows):
            ax = axes[i, j]
            if key in s:
                ax.plot(days, s[key].values, "o-", color="tab:blue", label="model (ensemble)", ms=3)
            if key == "ssr":
                if "ssr_corrected" in s:
                    ax.plot(
                        days, s["ssr_corrected"].values, "s-", color="tab:purple", ms=3, label=r"$\sqrt{(M+1)/M}$ SSR"
                    )
                if "ssr_physics" in s:
                    ax.plot(days, s["ssr_physics"].values, "-", color="tab:red", label="physics SSR")
                ax.axhline(1.0, color="k", lw=0.8)
                ax.set_ylabel("spread-skill ratio")
            else:
                for base, (col, ls) in styles.items():
                    k = f"{key}_{base}"
                    if k in s:
                        ax.plot(days, s[k].values, ls, color=col, label=base.replace("_", " "))
                ax.set_ylabel(f"{label} [{u}]")
            ax.set_xlabel("lead time [days]")
            ax.grid(alpha=0.3)
            if i == 0:
                ax.set_title(c)
            if j == 0:
                ax.legend(fontsize=7)
    fig.suptitle(f"skill vs lead ({int(scores.attrs.get('members', 0))} members)")
    return _save(fig, out)


def plot_rank_histograms(scores: xr.Dataset, out: Path) -> Path:
    """Rank histograms (frequency x (M+1), so 1 is flat) at up to 4 leads per channel."""
    if "rank_histogram" not in scores:
        raise UsageError("the scores have no rank histogram (single-member forecast)")
    plt = _plt()
    chans = [str(c) for c in scores["channel"].values]
    hours = scores["lead_hours"].values
    sel = pick_leads(hours)
    fig, axes = plt.subplots(1, len(chans), figsize=(4.2 * len(chans), 3.2), squeeze=False)
    for j, c in enumerate(chans):
        ax = axes[0, j]
        for k in sel:
            h = scores["rank_histogram"].sel(channel=c).isel(prediction_timedelta=k).values.astype(float)
            ax.step(np.arange(h.size), h / h.sum() * h.size, where="mid", label=f"{hours[k] / 24:g} d")
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_xlabel("rank of the truth among members")
        ax.set_ylabel("relative frequency x (M+1)")
        ax.set_title(c)
        ax.legend(fontsize=7)
    return _save(fig, out)


def plot_spectra(scores: xr.Dataset, out: Path) -> Path:
    """Angular power spectra of truth (black), single members (solid) and ensemble mean (dashed), log-log."""
    plt = _plt()
    chans = [str(c) for c in scores["channel"].values]
    hours = scores["lead_hours"].values
    sel = pick_leads(hours)
    fig, axes = plt.subplots(1, len(chans), figsize=(4.4 * len(chans), 3.6), squeeze=False)
    l = scores["l"].values
    pos = l >= 1
    cmap = plt.get_cmap("viridis")
    for j, c in enumerate(chans):
        ax = axes[0, j]
        s = scores.sel(channel=c)
        ax.loglog(l[pos], s["psd_truth"].isel(prediction_timedelta=sel[-1]).values[pos], "k-", lw=2, label="truth")
        for n, k in enumerate(sel):
            col = cmap(n / max(1, len(sel) - 1))
            ax.loglog(
                l[pos],
                s["psd_member"].isel(prediction_timedelta=k).values[pos],
                "-",
                color=col,
                label=f"member {hours[k] / 24:g} d",
            )
            ax.loglog(l[pos], s["psd_ensmean"].isel(prediction_timedelta=k).values[pos], "--", color=col, lw=0.8)
        u = _units(scores, c)
        ax.set_xlabel("spherical harmonic degree l")
        ax.set_ylabel(f"P(l) [({u})$^2$ sr]")
        ax.set_title(f"{c} (dashed: ensemble mean)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    return _save(fig, out)


def plot_maps(
    forecast: xr.Dataset, truth: xr.Dataset, out: Path, case: int = 0, lead: int = -1, member: int = 0
) -> Path:
    """Truth, ensemble mean, spread and member ``member`` of case ``case`` at lead index ``lead``."""
    plt = _plt()
    chans = [str(c) for c in forecast.data_vars]
    fc = forecast.isel(time=case, prediction_timedelta=lead).load()
    init = pd.Timestamp(fc["time"].values)
    lead_td = pd.Timedelta(fc["prediction_timedelta"].values)
    valid = init + lead_td
    if valid not in pd.DatetimeIndex(truth["time"].values):
        raise UsageError(f"the truth store has no state at the valid time {valid}")
    y = truth[chans].sel(time=valid).load()
    lat, lon = fc["lat"].values, fc["lon"].values
    extent = [lon[0], lon[-1], lat[-1], lat[0]]
    fig, axes = plt.subplots(len(chans), 4, figsize=(17, 3.2 * len(chans)), squeeze=False, layout="constrained")
    for i, c in enumerate(chans):
        u = truth[c].attrs.get("units", "")
        mean = fc[c].mean("realization").values
        panels = [
            ("truth", y[c].values, "RdBu_r"),
            ("ensemble mean", mean, "RdBu_r"),
            ("ensemble spread (std)", fc[c].std("realization", ddof=1).values, "magma"),
            (f"member {member}", fc[c].isel(realization=member).values, "RdBu_r"),
        ]
        lo, hi = np.nanpercentile(y[c].values, [1, 99])
        for j, (title, field, cmap) in enumerate(panels):
            ax = axes[i, j]
            kw = {"vmin": lo, "vmax": hi} if cmap == "RdBu_r" else {}
            im = ax.imshow(field, extent=extent, origin="upper", aspect="auto", cmap=cmap, **kw)
            fig.colorbar(im, ax=ax, label=u, shrink=0.85)
            ax.set_title(f"{c}: {title}", fontsize=9)
            if i == len(chans) - 1:
                ax.set_xlabel("longitude [°E]")
            if j == 0:
                ax.set_ylabel("latitude [°N]")
    fig.suptitle(
        f"init {init:%Y-%m-%d %H:%M}, lead {lead_td / pd.Timedelta(hours=1):g} h (valid {valid:%Y-%m-%d %H:%M})"
    )
    return _save(fig, out)


def plot_all(
    scores_path: Path,
    out_dir: Path,
    forecast_path: Path | None = None,
    truth_path: Path | None = None,
    fmt: str = "png",
) -> list[Path]:
    """Every plot above that the inputs allow; returns the files written."""
    if not Path(scores_path).exists():
        raise UsageError(f"scores file {scores_path} does not exist; run `sciml forecast score` first")
    if Path(scores_path).is_dir():
        raise UsageError(
            f"{scores_path} is a folder, not a scores file; to look at a dataset use `sciml plot data "
            f"{scores_path} --out DIR`"
        )
    with xr.open_dataset(scores_path, engine="h5netcdf") as s:
        scores = s.load()
    if "crps" not in scores or "lead_hours" not in scores.coords:
        raise UsageError(f"{scores_path} is not a scores file of `sciml forecast score`")
    out_dir = Path(out_dir)
    files = [plot_skill(scores, out_dir / f"skill.{fmt}"), plot_spectra(scores, out_dir / f"spectra.{fmt}")]
    if "rank_histogram" in scores:
        files.append(plot_rank_histograms(scores, out_dir / f"rank_histograms.{fmt}"))
    if forecast_path is not None and truth_path is not None:
        from sciml.forecasting.data.dataset import open_canonical
        from sciml.forecasting.eval.score import open_forecast

        fc = open_forecast(forecast_path)
        tr = open_canonical(truth_path)
        try:
            files.append(plot_maps(fc, tr, out_dir / f"maps.{fmt}"))
        finally:
            tr.close()
    return files
