"""``sciml forecast demo``: the forecasting workflow end to end on the built-in shallow-water data.

1. ``sciml data synth``: a shallow-water store (quick: 2 trajectories x 30 days; full: the default 4 x 365 days);
2. ``sciml forecast train`` with the ``quick`` (or ``demo``) config; an existing run is resumed, not redone;
3. ``sciml forecast infer`` from initial times spread over the held-out trajectory, 5-day lead;
4. ``sciml forecast score`` with persistence and climatology baselines;
5. ``sciml plot forecast``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import pandas as pd

from sciml.progress import default_progress

LOGGER = logging.getLogger(__name__)

QUICK_DATA = dict(days=30.0, trajectories=2, spinup_days=10.0)
#: Store of the full demo (built once by ``make demo-forecast``, shared by bench/forecast_experiments.py).
FULL_STORE = Path("data/swe.zarr")


def ensure_demo_store(store: Path, full: bool) -> None:
    """Build the demo's shallow-water store (with statistics) unless it is already there."""
    from sciml.forecasting.data import PRESETS, compute_stats, simulate, source_from_dataset, stats_path, write_store

    if store.exists() and stats_path(store).exists():
        print(f"[1/5] data: using {store}")
        return
    cfg = PRESETS["default"] if full else dataclasses.replace(PRESETS["default"], **QUICK_DATA)
    t0 = time.monotonic()
    ds, _ = simulate(cfg, default_progress())
    src = source_from_dataset(ds, path=store)
    write_store(src, store, overwrite=True)
    compute_stats(src).save(stats_path(store))
    print(f"[1/5] data: wrote {store} ({ds.sizes['time']} steps, {time.monotonic() - t0:.0f} s)")


def run_demo(out: Path, full: bool = False, members: int | None = None, overrides: dict | None = None) -> int:
    from sciml.forecasting.infer import InferConfig, run_inference
    from sciml.forecasting.plots import plot_all
    from sciml.forecasting.score import ScoreConfig, acceptance_report, format_table, score_forecast
    from sciml.forecasting.train import CHECKPOINT_NAME, Trainer, load_train_config

    from sciml.runinfo import RunInfo, write_run_dir

    out = Path(out)
    t_start = time.monotonic()
    store = FULL_STORE if full else out / "data" / "swe-quick.zarr"
    ensure_demo_store(store, full)

    cfg = load_train_config("demo" if full else "quick", {"data.store": str(store), **(overrides or {})})
    if cfg.threads is not None:
        import torch

        torch.set_num_threads(cfg.threads)
    run_dir = out / "train"
    ckpt = run_dir / CHECKPOINT_NAME
    t0 = time.monotonic()
    trainer = Trainer(cfg, run_dir, resume=ckpt if ckpt.exists() else None, progress=default_progress())
    write_run_dir(run_dir, cfg, RunInfo(command="sciml forecast demo", seed=cfg.seed))
    trainer.run()
    last = trainer.log.valid[-1] if trainer.log.valid else {}
    print(
        f"[2/5] train: {trainer.step} steps ({time.monotonic() - t0:.0f} s), last validation "
        + " ".join(f"{k}={v:.3g}" for k, v in last.items() if k != "step")
    )

    # initial times every 2 days over the held-out period, leaving room for the 5-day lead
    from sciml.forecasting.data.dataset import open_canonical

    lead = pd.Timedelta(days=5)
    with open_canonical(store) as ds:
        times = pd.DatetimeIndex(ds["time"].values)
    held = times[times >= pd.Timestamp(cfg.data.valid_start)]
    inits = [t for t in held if t.hour == 0 and t + lead <= held[-1]][:: 5 if not full else 30]
    inits = inits[: 5 if not full else 12]
    fc_path = out / "forecast.zarr"
    t0 = time.monotonic()
    members = members or 8
    run_inference(
        InferConfig(
            checkpoint=ckpt,
            inits=tuple(t.isoformat() for t in inits),
            lead="5d",
            members=members,
            out=fc_path,
            store=store,
            overwrite=True,
        ),
        default_progress(),
    )
    print(
        f"[3/5] infer: {len(inits)} initial times x {members} members x 5 days -> {fc_path} "
        f"({time.monotonic() - t0:.0f} s)"
    )

    scores_path = out / "scores.nc"
    scores = score_forecast(ScoreConfig(forecast=fc_path, truth=store, out=scores_path), default_progress())
    print(f"[4/5] score: {scores_path}")
    print(format_table(scores, [6.0, 24.0, 72.0, 120.0]))
    print("skill targets (6 h - 5 d):")
    print(acceptance_report(scores))

    files = plot_all(scores_path, out / "plots", fc_path, store)
    print(f"[5/5] plots: {', '.join(str(f) for f in files)}")
    print(
        f"forecasting demo done in {time.monotonic() - t_start:.0f} s; outputs in {out}/ (train/ checkpoint and "
        f"metrics, forecast.zarr, scores.nc, plots/)"
    )
    return 0
