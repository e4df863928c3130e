"""Where the members' spectra leave the truth's: the diagnosis behind the README's "Measured" notes.

    python bench/wind_spectra.py runs/bench/forecast/demo runs/bench/forecast/antithetic-4-seed-2
    python bench/wind_spectra.py runs/demo/forecast-full --lead 5d --json wind.json
    python bench/wind_spectra.py runs/bench/forecast/demo --floored 0.01,0.003

For each forecast (a ``forecast.zarr`` store or a folder holding one, as ``sciml forecast demo`` and
``bench/forecast_experiments.py`` write them) and the truth store it was initialised from:

* the winds as one vector field (:func:`sciml.forecasting.eval.spectra.vector_power_tensor`): the members' mean
  spheroidal (divergent) and toroidal (rotational) kinetic energy per degree over the truth's, zonal (m = 0) and
  non-zonal (m > 0) parts apart, and the tilted solid-body rotation (toroidal l = 1, m = 1) on its own;
* for each scalar channel, the members' mean angular power over the truth's per degree, and in how many cases
  (initial times) the member mean exceeds the truth at ``--case-degree`` (a systematic excess is there in most
  cases; a few outliers are not);
* the ratio's growth with lead for each ``--growth`` band (channel and degrees; by default z500 at l = 13-16 and
  v500 at l = 8-11 and 1-3), showing whether a miss builds up over the rollout or is there from the first step;
* the tilted solid-body rotation (toroidal l = 1, m = 1) per lead: the members' rms amplitude over the truth's,
  and how well its axis is locked across cases and members (phase concentration: 1 for a fixed bias, e.g. one
  imprinted by an input field; near 0 for a random walk of the axis);
* per lead, the divergent (spheroidal) share of the kinetic energy of the ensemble-mean error and of the spread
  (members minus their mean): spread where the error is not is spread in the wrong modes.

``--floored F,...`` also counts, per channel and degree, the coefficients whose typical size in the training data
is below the whitening floor ``F`` times the channel's largest (those that ``loss.spectral_floor`` scores in units
of the floor, not their own) at ``--floored-degrees``, from the run's resolved config (``train/config.yaml`` next
to the forecast).

Prints tables and writes JSON (``--json``; default ``bench/results/wind_spectra.json``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def parse_lead(text: str) -> np.timedelta64:
    """``5d`` / ``120h`` -> a timedelta (the lead to analyse)."""
    unit = text[-1].lower()
    if unit not in "dh" or not text[:-1].isdigit():
        raise SystemExit(f"--lead {text!r}: give days or hours, e.g. 5d or 120h")
    return np.timedelta64(int(text[:-1]) * (24 if unit == "d" else 1), "h")


def parse_band(text: str, option: str) -> tuple[str, int, int]:
    """``z500:13-16`` -> ``("z500", 13, 16)``."""
    try:
        name, band = text.split(":")
        lo, hi = (int(x) for x in band.split("-"))
    except ValueError:
        raise SystemExit(f"{option} {text!r}: give CHANNEL:LO-HI, e.g. z500:13-16") from None
    if not 1 <= lo <= hi:
        raise SystemExit(f"{option} {text!r}: need 1 <= LO <= HI")
    return name, lo, hi


def forecast_path(path: Path) -> Path:
    """The forecast store given itself or the run folder holding ``forecast.zarr``."""
    return path if path.suffix == ".zarr" else path / "forecast.zarr"


def _ratio(member: np.ndarray, truth: np.ndarray) -> list[float]:
    with np.errstate(divide="ignore", invalid="ignore"):
        return [float(x) for x in np.where(truth > 0, member / truth, np.nan)]


def analyse(
    fc_path: Path,
    truth_path: Path,
    lead: np.timedelta64 | None,
    wind: tuple[str, str],
    scalars: list[str],
    case_degree: int,
    growth: list[tuple[str, int, int]],
) -> dict:
    """Member/truth spectral ratios of one forecast; see the module docstring. Degrees are ``1..L/2``."""
    import torch

    from sciml.errors import UsageError
    from sciml.forecasting.data.dataset import open_canonical
    from sciml.forecasting.eval.score import open_forecast
    from sciml.forecasting.eval.spectra import power_spectrum_tensor, vector_coefficients, vector_power_tensor
    from sciml.forecasting.sphere import exact_lmax

    fc = open_forecast(fc_path)
    truth = open_canonical(truth_path)
    for name in {*wind, *scalars, *(g[0] for g in growth)}:
        for ds, what in ((fc, "forecast"), (truth, "truth")):
            if name not in ds.data_vars:
                raise UsageError(f"{what} has no channel {name!r} (has {', '.join(map(str, ds.data_vars))})")
    leads = fc.prediction_timedelta.values
    lead = leads[-1] if lead is None else lead
    if lead not in leads:
        raise UsageError(f"lead {lead} not in the forecast (leads {leads[0]} .. {leads[-1]})")
    at = fc.sel(prediction_timedelta=lead)
    valid = at.time.values + lead
    missing = np.setdiff1d(valid, truth.time.values)
    if missing.size:
        raise UsageError(f"truth has no states at {missing[:3]} (valid times of the forecast); pass the right --truth")

    def values(ds, name, **sel):
        return torch.from_numpy(np.ascontiguousarray(ds[name].sel(**sel).values))

    half = exact_lmax(fc.sizes["lat"]) // 2  # l <= lmax/2, as the acceptance check
    degrees = list(range(1, half + 1))
    ut, vt = values(truth, wind[0], time=valid), values(truth, wind[1], time=valid)  # [T, H, W]
    um, vm = values(at, wind[0]), values(at, wind[1])  # [T, R, H, W]
    et = vector_power_tensor(ut, vt).mean(0)  # [2, L, M]
    em = vector_power_tensor(um, vm).mean((0, 1))
    out: dict = {"forecast": str(fc_path), "lead_h": int(lead / np.timedelta64(1, "h")), "degrees": degrees}
    vec: dict = {}
    for k, part in enumerate(("spheroidal", "toroidal")):
        for label, sl in (("all", slice(None)), ("m0", slice(0, 1)), ("m>0", slice(1, None))):
            t = et[k, :, sl].sum(-1)[1 : half + 1].numpy()
            m = em[k, :, sl].sum(-1)[1 : half + 1].numpy()
            vec[f"{part} {label}"] = _ratio(m, t)
    vec["toroidal l=1 m=1"] = float(em[1, 1, 1] / et[1, 1, 1])
    out["wind"] = vec
    out["scalar"] = {}
    for name in scalars:
        pt = power_spectrum_tensor(values(truth, name, time=valid))  # [T, L]
        pm = power_spectrum_tensor(values(at, name)).mean(1)  # [T, L]: member mean per case
        per_case = (pm[:, case_degree] / pt[:, case_degree]).numpy()
        out["scalar"][name] = {
            "ratio": _ratio(pm.mean(0)[1 : half + 1].numpy(), pt.mean(0)[1 : half + 1].numpy()),
            "case_degree": case_degree,
            "cases_above": int((per_case > 1).sum()),
            "cases": int(per_case.size),
            "case_median": float(np.median(per_case)),
        }
    lead_h = [int(d / np.timedelta64(1, "h")) for d in leads]
    out["growth"] = []
    for name, lo, hi in growth:
        rows = []
        for d in leads:
            pt = power_spectrum_tensor(values(truth, name, time=fc.time.values + d))[:, lo : hi + 1].mean(0)
            pm = power_spectrum_tensor(values(fc, name, prediction_timedelta=d))[:, :, lo : hi + 1].mean((0, 1))
            rows.append(float((pm / pt).mean()))  # mean over the band of the per-degree ratios
        out["growth"].append({"channel": name, "degrees": [lo, hi], "lead_h": lead_h, "ratio": rows})
    tilt: dict = {"lead_h": lead_h, "member_rms": [], "truth_rms": [], "phase_concentration": []}
    divergent: dict = {"lead_h": lead_h, "error": [], "spread": []}
    for d in leads:
        ut, vt = (values(truth, c, time=fc.time.values + d) for c in wind)
        um, vm = (values(fc, c, prediction_timedelta=d) for c in wind)
        # the divergent (spheroidal) share of the ensemble-mean error's and of the spread's kinetic energy
        mu, mv = um.mean(1, keepdim=True), vm.mean(1, keepdim=True)
        err = vector_power_tensor(mu[:, 0] - ut, mv[:, 0] - vt).sum((-1, -2)).mean(0)  # [2]
        spread = vector_power_tensor(um - mu, vm - mv).sum((-1, -2)).mean((0, 1))
        divergent["error"].append(float(err[0] / err.sum()))
        divergent["spread"].append(float(spread[0] / spread.sum()) if float(spread.sum()) > 0 else float("nan"))
        cm = vector_coefficients(um, vm)
        t11, m11 = vector_coefficients(ut, vt)[..., 1, 1, 1], cm[..., 1, 1, 1]  # [T], [T, R]
        tilt["member_rms"].append(float(m11.abs().pow(2).mean().sqrt()))
        tilt["truth_rms"].append(float(t11.abs().pow(2).mean().sqrt()))
        # |mean unit phasor|: 1 if every member tilts about the same axis (a locked bias), ~0 for random axes
        tilt["phase_concentration"].append(float((m11 / m11.abs().clamp_min(1e-300)).mean().abs()))
    out["tilt"] = tilt
    out["divergent_share"] = divergent
    return out


def floored_counts(cfg, floors: list[float], degrees: range) -> dict:
    """Per floor, channel (wind pairs as spheroidal/toroidal) and degree: how many of the ``2l + 1`` coefficients
    ``m = -l..l`` have a typical size below ``floor`` times the channel's largest, as the training loss of the
    :class:`~sciml.forecasting.train.TrainConfig` ``cfg`` sees them (``m`` and ``-m`` of a real field share one
    size)."""
    from sciml.forecasting.losses import mode_amplitudes
    from sciml.forecasting.train.data import open_dataset
    from sciml.forecasting.train.objective import spectral_sample_fields, vector_pairs

    # the samples the trainer's whitening weights come from
    fields, channels = spectral_sample_fields(open_dataset(cfg, 1, "train"), cfg.loss.spectral_samples)
    pairs = vector_pairs(cfg, channels)
    amps = mode_amplitudes(fields, vector_pairs=pairs)  # [C, L, L]
    names = list(channels)
    for u, v in pairs:
        names[u], names[v] = f"{channels[u]}|{channels[v]} spheroidal", f"{channels[u]}|{channels[v]} toroidal"
    top = amps.flatten(1).max(-1).values
    out = {}
    for f in floors:
        out[str(f)] = {
            names[c]: {str(l): _count(amps[c, l, : l + 1] < f * top[c]) for l in degrees} for c in range(len(names))
        }
    return out


def _count(below) -> int:
    return int(below[0]) + 2 * int(below[1:].sum())


def _fmt(xs: list[float]) -> str:
    return " ".join(f"{x:5.2f}" for x in xs)


def report(res: dict) -> str:
    lines = [f"== {res['forecast']} at {res['lead_h']} h (member mean / truth, l = 1..{res['degrees'][-1]})"]
    for key, xs in res["wind"].items():
        lines.append(f"  {key:22s} {xs:.2f}" if isinstance(xs, float) else f"  {key:22s} {_fmt(xs)}")
    for name, s in res["scalar"].items():
        lines.append(f"  {name:22s} {_fmt(s['ratio'])}")
        lines.append(
            f"  {'':22s} l = {s['case_degree']}: member mean above the truth in {s['cases_above']} of {s['cases']}"
            f" cases (median case x{s['case_median']:.2f})"
        )
    for g in res["growth"]:
        by_lead = zip(g["lead_h"], g["ratio"], strict=True)
        pairs = ", ".join(f"{h} h x{r:.2f}" for h, r in by_lead if h % 24 == 0 or h == g["lead_h"][0])
        lines.append(f"  {g['channel']} l = {g['degrees'][0]}-{g['degrees'][1]} vs lead: {pairs}")
    t = res["tilt"]
    rows = zip(t["lead_h"], t["member_rms"], t["truth_rms"], t["phase_concentration"], strict=True)
    cells = ", ".join(f"{h} h x{m / tr:.2f} ({c:.2f})" for h, m, tr, c in rows if h % 24 == 0 or h == t["lead_h"][0])
    lines.append(f"  tilted rotation T11 rms member/truth (phase concentration) vs lead: {cells}")
    dv = res["divergent_share"]
    rows = zip(dv["lead_h"], dv["error"], dv["spread"], strict=True)
    cells = ", ".join(f"{h} h {e:.2f}/{sp:.2f}" for h, e, sp in rows if h % 24 == 0 or h == dv["lead_h"][0])
    lines.append(f"  divergent share of the ensemble-mean error / of the spread (kinetic energy) vs lead: {cells}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("forecasts", nargs="+", type=Path, help="forecast.zarr stores or run folders holding one")
    p.add_argument("--truth", type=Path, default=ROOT / "data" / "swe.zarr")
    p.add_argument("--lead", default=None, help="lead to analyse, e.g. 5d (default: the last)")
    p.add_argument("--wind", default="u500,v500", help="eastward,northward wind channels")
    p.add_argument("--scalars", default="z500,v500", help="comma-separated channels for scalar spectra")
    p.add_argument("--case-degree", type=int, default=2)
    p.add_argument(
        "--growth",
        default="z500:13-16,v500:8-11,v500:1-3",
        help="comma-separated CHANNEL:LO-HI degree bands followed over the leads",
    )
    p.add_argument("--floored", default="", help="comma-separated whitening floors to count floored coefficients")
    p.add_argument("--floored-degrees", default="13-16", help="LO-HI degrees for --floored")
    p.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "wind_spectra.json")
    args = p.parse_args(argv)

    from sciml.errors import UsageError
    from sciml.forecasting.train.config import load_train_config
    from sciml.io import atomic_write_json

    wind = tuple(args.wind.split(","))
    if len(wind) != 2:
        raise SystemExit(f"--wind {args.wind!r}: give two channels, eastward,northward")
    growth = [parse_band(g, "--growth") for g in args.growth.split(",")]
    _, flo, fhi = parse_band(f"-:{args.floored_degrees}", "--floored-degrees")
    lead = None if args.lead is None else parse_lead(args.lead)
    floors = [float(x) for x in args.floored.split(",") if x]
    results = []
    try:
        for path in args.forecasts:
            res = analyse(
                forecast_path(path), args.truth, lead, wind, args.scalars.split(","), args.case_degree, growth
            )
            print(report(res), flush=True)
            if floors:
                cfg = (path if path.suffix != ".zarr" else path.parent) / "train" / "config.yaml"
                if not cfg.exists():
                    raise UsageError(f"--floored needs the run's resolved config; {cfg} does not exist")
                res["floored"] = floored_counts(load_train_config(cfg), floors, range(flo, fhi + 1))
                for f, per in res["floored"].items():
                    for ch, counts in per.items():
                        cells = ", ".join(f"l={l}: {n}/{2 * int(l) + 1}" for l, n in counts.items())
                        print(f"  floor {f} {ch}: {cells}")
            results.append(res)
    except UsageError as exc:
        raise SystemExit(f"error: {exc}") from None
    args.json.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.json, results)  # an interrupted run never leaves half a results file
    print(f"wrote {args.json}")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
