"""How well the winds' degree-1 flow of a store predicts itself: the evidence behind ``model.degree_one_winds``.

    python bench/degree_one.py data/swe.zarr --json bench/results/degree_one.json
    python bench/degree_one.py era5.zarr --wind u500,v500 --lags 1,4,20

For each of the six degree-1 modes of the wind pair (the solid-body rotations about x, y, z and the flows across
the sphere along them, :mod:`sciml.forecasting.models.planetary`) and each lag, the least-squares multiplier
:math:`k` of the coefficient ``lag`` steps ahead on its present value (one complex multiplier for each equatorial
pair, :math:`T_x + iT_y` and :math:`S_x + iS_y`; a real one for the axial modes), and the residual's share of the
variance, :math:`\\langle|c_{t+\\tau} - k c_t|^2\\rangle / \\langle|c_{t+\\tau}|^2\\rangle`: near 0 when the mode is
a linear function of itself (what the learned map can represent), near 1 when the rest of the flow drives it.
Pairs of times are taken within one trajectory segment (the store's ``segment`` coordinate, if any). Also the
power of each mode (mean of :math:`\\tfrac23 |c|^2`, m² s⁻², the mode's share of the spherical mean of
:math:`|\\mathbf u|^2`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def coefficients(u: np.ndarray, v: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Degree-1 coefficients ``[T, 6]`` (m/s, the model's mode order) of winds ``[T, H, W]`` on the I/O grid, by
    the model's own :class:`~sciml.forecasting.models.planetary.DegreeOneFlow` (in float64)."""
    import torch

    from sciml.forecasting.models.layers import SerialSphereOps
    from sciml.forecasting.models.planetary import DegreeOneFlow

    flow = DegreeOneFlow(((0, 1),), len(lat), len(lon), SerialSphereOps()).double()
    winds = torch.from_numpy(np.stack([u, v], axis=1)[:, None].astype(np.float64))  # [T, 1, 2, H, W]
    with torch.no_grad():
        return flow.coefficients(winds)[:, 0].numpy()


def predictability(c: np.ndarray, segment: np.ndarray, lags: list[int]) -> dict:
    """Per mode and lag: the least-squares multiplier and the residual's share of the variance."""
    series = {
        "T_x+iT_y": c[:, 0] + 1j * c[:, 1],
        "T_z": c[:, 2],
        "S_x+iS_y": c[:, 3] + 1j * c[:, 4],
        "S_z": c[:, 5],
    }
    out: dict = {}
    for name, x in series.items():
        rows = {"power_m2s2": float(np.mean(np.abs(x) ** 2) * 2 / 3)}
        for lag in lags:
            same = np.array([segment[i] == segment[i + lag] for i in range(len(x) - lag)])
            a, b = x[:-lag][same], x[lag:][same]
            with np.errstate(invalid="ignore", divide="ignore"):  # a mode that is zero throughout: nan
                k = np.vdot(a, b) / np.vdot(a, a)
                resid = float(np.mean(np.abs(b - k * a) ** 2) / np.mean(np.abs(b) ** 2))
            rows[f"lag{lag}"] = {
                "abs_k": float(abs(k)),
                "phase_deg": float(np.degrees(np.angle(k))),
                "residual_share": resid,
            }
        out[name] = rows
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store", type=Path, help="a store written by `sciml data synth` or `sciml data prepare`")
    ap.add_argument("--wind", default="u500,v500", help="eastward,northward channel names (default u500,v500)")
    ap.add_argument("--lags", default="1,4,20", help="lags in time steps (default 1,4,20: 6 h, 1 d, 5 d)")
    ap.add_argument("--times", type=int, default=0, help="use the first N times only (default all)")
    ap.add_argument("--json", type=Path, default=None, help="write the numbers here too")
    args = ap.parse_args(argv)
    import xarray as xr

    names = args.wind.split(",")
    lags = [int(x) for x in args.lags.split(",")]
    if len(names) != 2 or min(lags) < 1:
        print("--wind takes two channel names and --lags positive steps", file=sys.stderr)
        return 2
    with xr.open_zarr(args.store) as ds:
        missing = [n for n in names if n not in ds]
        if missing:
            print(f"{args.store} has no channel {missing[0]}; give --wind EASTWARD,NORTHWARD", file=sys.stderr)
            return 2
        sel = ds.isel(time=slice(0, args.times or None))
        u, v = (sel[n].values.astype(np.float64) for n in names)
        segment = sel["segment"].values if "segment" in sel.coords else np.zeros(sel.sizes["time"], dtype=int)
        step = float(ds.attrs.get("time_step_hours", np.nan))
        c = coefficients(u, v, sel["lat"].values, sel["lon"].values)
    result = {"store": str(args.store), "wind": names, "times": len(segment), "step_hours": step}
    result["modes"] = predictability(c, segment, lags)
    print(f"{args.store}: {len(segment)} times, degree-1 flow of ({names[0]}, {names[1]})")
    print(f"{'mode':10} {'power':>10}" + "".join(f" {'lag ' + str(k):>26}" for k in lags))
    for name, row in result["modes"].items():
        cells = ""
        for k in lags:
            r = row[f"lag{k}"]
            cells += f"  |k| {r['abs_k']:.3f} {r['phase_deg']:6.1f}° res {r['residual_share']:.4f}"
        print(f"{name:10} {row['power_m2s2']:10.3g}{cells}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
