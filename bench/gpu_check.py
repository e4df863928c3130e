"""The prepared GPU check: the ``fcn3`` model at 0.25 degrees in bf16 with activation checkpointing, the spherical
transforms at that size, and the ``demo`` preset end to end through the CLI.

    python bench/gpu_check.py                                  # on the GPU (CUDA), 721 x 1440
    python bench/gpu_check.py --device cpu --grid 33x64 --demo-steps 2 --demo-lead 12h   # the CPU smoke run

Prints a table and writes ``bench/results/gpu_check.json`` (``--json`` elsewhere). Times are medians over
``--repeats`` steps after one untimed warm-up step, synchronised on CUDA; peak memory is
``torch.cuda.max_memory_allocated`` (``None`` on CPU, where torch does not track it).

1. ``fcn3`` forward, one member, no gradients (inference): s/step. Anchors: FCN3 reports a 60-day 6-hourly
   rollout (240 steps) in under 4 minutes on one H100 (<= 1 s/step); our goal on an H200 is <= 0.7 s/member-step.
2. ``fcn3`` forward + backward, one member (loss: mean square), and a 1-step fair-CRPS loss (grid + spectral, FCN3's
   objective) with 2 members: s/step and peak memory. Goal: one 0.25 degree member's training step fits one GPU.
3. ``RealSHT`` / ``InverseRealSHT`` of the 72 state channels and the encoder's DISCO convolution at that grid:
   fields/s.
4. The ``demo`` preset end to end: ``sciml forecast train`` for ``--demo-steps`` steps on the quick demo's store,
   then ``sciml forecast infer`` of a ``--demo-lead`` rollout with 4 members, on ``--device``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from sciml.io import atomic_write_json

ROOT = Path(__file__).resolve().parent
DEFAULT_JSON = ROOT / "results" / "gpu_check.json"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


WARMUP = 1  # untimed calls before the timed ones (the CPU smoke test sets 0)


def timed(fn: Callable[[], Any], device: torch.device, repeats: int) -> tuple[float, int | None]:
    """Median seconds of ``fn`` after ``WARMUP`` untimed calls, and the peak device memory of the timed calls."""
    for _ in range(WARMUP):
        fn()
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    peak = int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else None
    return statistics.median(times), peak


def model_rows(device: torch.device, nlat: int, nlon: int, precision: str, repeats: int) -> list[dict]:
    """Sections 1 and 2: the ``fcn3`` preset at ``nlat x nlon`` with block checkpointing."""
    from sciml.forecasting.losses import FairCRPS, fcn3_loss
    from sciml.forecasting.models import FCN3, count_parameters, ensemble_step, preset
    from sciml.forecasting.runtime import Runtime

    cfg = preset("fcn3", nlat=nlat, nlon=nlon)
    rt = Runtime(device, precision, "blocks")  # type: ignore[arg-type]
    torch.manual_seed(0)
    model = FCN3(cfg, checkpoint_blocks=True).to(device)
    g = torch.Generator().manual_seed(0)

    def rnd(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g).to(device)

    x, aux, z = rnd(1, cfg.n_channels, nlat, nlon), rnd(1, cfg.n_aux, nlat, nlon), rnd(1, cfg.n_noise, nlat, nlon)
    rows = []

    @torch.no_grad()
    def infer() -> None:
        model.eval()
        with rt.autocast():
            model(x, aux, z)

    s, peak = timed(infer, device, repeats)
    rows.append({"case": "fcn3 forward, 1 member (inference)", "s_per_step": s, "peak_bytes": peak})

    def train_one() -> None:
        model.train()
        model.zero_grad(set_to_none=True)
        with rt.autocast():
            y = model(x, aux, z)
        y.float().square().mean().backward()

    s, peak = timed(train_one, device, repeats)
    rows.append({"case": "fcn3 forward+backward, 1 member", "s_per_step": s, "peak_bytes": peak})

    loss_fn = fcn3_loss(nlat, nlon, FairCRPS()).to(device)
    state = x.unsqueeze(0).expand(2, *x.shape)
    noise = rnd(2, 1, cfg.n_noise, nlat, nlon)
    target = rnd(1, cfg.n_channels, nlat, nlon)

    def train_crps() -> None:
        model.train()
        model.zero_grad(set_to_none=True)
        with rt.autocast():
            fc = ensemble_step(model, state, aux, noise)
        loss_fn(fc.float(), target).backward()

    s, peak = timed(train_crps, device, repeats)
    rows.append({"case": "fcn3 1-step CRPS loss, 2 members, fwd+bwd", "s_per_step": s, "peak_bytes": peak})
    for r in rows:
        r.update(parameters=count_parameters(model), grid=f"{nlat}x{nlon}", precision=precision)
    return rows


def transform_rows(device: torch.device, nlat: int, nlon: int, repeats: int) -> list[dict]:
    """Section 3: SHT, inverse SHT and the encoder's DISCO convolution on the 72 ``fcn3`` state channels."""
    import torch_harmonics as th

    from sciml.forecasting.models import preset
    from sciml.forecasting.models.layers import DiscoEncoder, SerialSphereOps

    cfg = preset("fcn3", nlat=nlat, nlon=nlon)
    c = cfg.n_channels
    sht = th.RealSHT(nlat, nlon, grid="equiangular", norm="ortho").to(device)
    isht = th.InverseRealSHT(nlat, nlon, grid="equiangular", norm="ortho").to(device)
    x = torch.randn(1, c, nlat, nlon).to(device)
    coeffs = sht(x)
    # the model's atmospheric encoder: every pressure level's variables onto the internal grid
    enc = DiscoEncoder(
        SerialSphereOps(),
        cfg.n_atmo_vars,
        cfg.atmo_embed_dim,
        (nlat, nlon),
        cfg.internal_shape,
        grid_in="equiangular",
        grid_out=cfg.internal_grid,
        kernel_shape=tuple(cfg.kernel_shape),
        basis_type=cfg.basis_type,
        basis_norm_mode=cfg.basis_norm_mode,
    ).to(device)
    levels = torch.randn(cfg.n_levels, cfg.n_atmo_vars, nlat, nlon).to(device)
    rows = []
    with torch.no_grad():
        for name, fn in (
            ("RealSHT", lambda: sht(x)),
            ("InverseRealSHT", lambda: isht(coeffs)),
            ("DISCO encoder", lambda: enc(levels)),
        ):
            s, _ = timed(fn, device, repeats)
            n = c if name != "DISCO encoder" else cfg.n_levels * cfg.n_atmo_vars
            rows.append(
                {"case": f"{name}, {n} fields", "s_per_call": s, "fields_per_s": n / s, "grid": f"{nlat}x{nlon}"}
            )
    return rows


def demo_rows(device: str, steps: int, lead: str, workdir: Path) -> list[dict]:
    """Section 4: the demo preset through the CLI on the quick demo's store."""
    from sciml.cli import main
    from sciml.forecasting.demo import QUICK_DEMO, ensure_demo_store

    store = workdir / "swe-quick.zarr"
    ensure_demo_store(store, QUICK_DEMO)
    run = workdir / "train"
    half = max(1, steps // 2)
    args = ["forecast", "train", "--config", "demo", "--out", str(run), "--device", device, "--precision", "bf16"]
    args += ["--set", f"data.store={store}", "--set", "data.train_end=2001-01-30T18:00"]
    args += ["--set", "data.valid_start=2001-01-31T00:00", "--set", "validation.every=100000"]
    args += ["--set", f"stages.0.steps={half}", "--set", "stages.0.rollout=1", "--max-steps", str(steps)]
    t0 = time.perf_counter()
    if main(args) != 0:
        raise SystemExit("demo training failed")
    train_s = time.perf_counter() - t0
    members, fc = 4, workdir / "fc.zarr"
    t0 = time.perf_counter()
    code = main(
        ["forecast", "infer", "--checkpoint", str(run / "checkpoint.pt"), "--init", "2001-01-31T00"]
        + ["--lead", lead, "--members", str(members), "--out", str(fc), "--data", str(store)]
        + ["--device", device, "--precision", "bf16"]
    )
    if code != 0:
        raise SystemExit("demo inference failed")
    infer_s = time.perf_counter() - t0
    lead_steps = int(pd_hours(lead) // 6)
    agree = members_agree(run / "checkpoint.pt", store, device, workdir)
    return [
        {"case": f"demo: sciml forecast train, {steps} steps (bf16)", "wall_s": train_s, "per_step_s": train_s / steps},
        {
            "case": f"demo: sciml forecast infer, {lead} x {members} members",
            "wall_s": infer_s,
            "per_member_step_s": infer_s / (members * lead_steps),
        },
        {
            "case": "same seed on the CPU and on the device: max abs difference / rms of the 12 h change",
            "ratio": agree,
            "pass": agree <= 0.01,
        },
    ]


def members_agree(checkpoint: Path, store: Path, device: str, workdir: Path) -> float:
    """The noise is drawn on CPU generators on every device: a device forecast must be the CPU one up to rounding
    (TF32 convolutions included). Returns max |device - cpu| over the rms of the CPU forecast's change in 12 h."""
    import numpy as np
    import pandas as pd
    import xarray as xr

    from sciml.forecasting.infer import InferConfig, run_inference

    init = "2001-01-31T00"
    base = dict(checkpoint=checkpoint, inits=(init,), lead="12h", members=2, seed=4, store=store)
    outs = {}
    for name, dev in (("cpu", "cpu"), ("device", device)):
        outs[name] = workdir / f"agree-{name}.zarr"
        run_inference(InferConfig(**base, out=outs[name], device=dev))  # type: ignore[arg-type]
    truth = xr.open_zarr(store, consolidated=False).sel(time=pd.Timestamp(init))
    cpu, dev_fc = (xr.open_zarr(outs[n], consolidated=False).isel(time=0) for n in ("cpu", "device"))
    ratio = 0.0
    for c in cpu.data_vars:
        change = cpu[c].isel(prediction_timedelta=-1).values - truth[c].values
        diff = np.abs(dev_fc[c].values - cpu[c].values).max()
        ratio = max(ratio, float(diff / np.sqrt(np.mean(change**2))))
    return ratio


def pd_hours(lead: str) -> float:
    import pandas as pd

    return pd.Timedelta(lead).total_seconds() / 3600


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    ap.add_argument("--grid", default="721x1440", help="NLATxNLON of the fcn3 sections (default 721x1440)")
    ap.add_argument("--precision", default="bf16", choices=["bf16", "fp32"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1, help="untimed calls before the timed ones (default 1)")
    ap.add_argument("--demo-steps", type=int, default=20, help="training steps of the demo section (default 20)")
    ap.add_argument("--demo-lead", default="5d", help="rollout of the demo section (default 5d)")
    ap.add_argument("--skip", action="append", default=[], choices=["model", "transforms", "demo"])
    ap.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = ap.parse_args(argv)
    from sciml.forecasting.runtime import resolve_device

    global WARMUP
    WARMUP = args.warmup
    device = resolve_device(args.device)
    nlat, nlon = (int(v) for v in args.grid.lower().split("x"))
    result: dict[str, Any] = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "grid": args.grid,
        "precision": args.precision,
        "sections": {},
    }
    t0 = time.perf_counter()
    if "model" not in args.skip:
        result["sections"]["model"] = model_rows(device, nlat, nlon, args.precision, args.repeats)
    if "transforms" not in args.skip:
        result["sections"]["transforms"] = transform_rows(device, nlat, nlon, args.repeats)
    if "demo" not in args.skip:
        with tempfile.TemporaryDirectory() as tmp:
            result["sections"]["demo"] = demo_rows(args.device, args.demo_steps, args.demo_lead, Path(tmp))
    result["total_s"] = time.perf_counter() - t0
    print(render(result))
    atomic_write_json(args.json, result)
    print(f"wrote {args.json}")
    return 0


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def render(result: dict) -> str:
    """Markdown tables, one per section (also used by ``bench/tables.py``)."""
    lines = [f"{result['device_name']} ({result['device']}), torch {result['torch']}, {result['precision']}", ""]
    for name, rows in result["sections"].items():
        keys = list(dict.fromkeys(k for r in rows for k in r if k != "case"))
        lines += [f"| {name} | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
        lines += ["| " + r["case"] + " | " + " | ".join(_fmt(r.get(k)) for k in keys) + " |" for r in rows]
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
