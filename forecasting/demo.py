"""``sciml forecast demo``: the forecasting workflow end to end on the built-in shallow-water data.

1. ``sciml data synth``: a shallow-water store (quick: 2 trajectories x 30 days; full: the default 4 x 365 days);
2. ``sciml forecast train`` with the ``quick`` (or ``demo``) config; an existing run is resumed, not redone;
3. ``sciml forecast infer`` from initial times spread over the held-out trajectory, 5-day lead;
4. ``sciml forecast score`` with persistence and climatology baselines (the full demo: also the perfect-model
   ``physics`` ensemble of the generator, :mod:`sciml.forecasting.eval.physics`);
5. ``sciml plot forecast``;

then the scores are checked against the demo's own :class:`~sciml.forecasting.eval.expectations.Expectations` (the
quick demo: a pipeline that runs in minutes and gives a sensible ensemble; the full demo: the skill targets), and
the command exits 1 if any is missed. Where the physics baseline was scored, the report also gives the model's
CRPS over the perfect-model ensemble's (and over persistence and climatology) with bootstrap intervals over the
cases (:mod:`sciml.forecasting.eval.bootstrap`): how far the learned ensemble is from the bound.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from sciml.forecasting.eval.bootstrap import format_ratio_rows, ratio_rows
from sciml.forecasting.eval.expectations import FULL, QUICK, Expectations
from sciml.forecasting.eval.score import DEFAULT_BASELINES
from sciml.forecasting.runtime import apply_threads
from sciml.io import atomic_write_json
from sciml.progress import default_progress

LOGGER = logging.getLogger(__name__)

QUICK_DATA = dict(days=30.0, trajectories=2, spinup_days=10.0)
#: Store of the full demo (built once by ``make demo-forecast``, shared by bench/forecast_experiments.py).
FULL_STORE = Path("data/swe.zarr")
#: Exit status of a demo that ran but missed its expectations.
MISSED_EXIT = 1
#: The demo's measurements as JSON in its output folder (:func:`demo_report`).
REPORT_NAME = "report.json"
#: Leads (hours) of the printed score tables.
REPORT_LEADS = [6.0, 24.0, 72.0, 120.0]


@dataclass(frozen=True)
class DemoSpec:
    """One demo: its training config, data, forecast cases, expectations and the closing hint.

    ``store`` ``None`` means a store of its own in the output folder (``data/swe-CONFIG.zarr``); a missing store
    is built with the data preset ``data_preset`` and the ``data`` overrides. Initial times are every
    ``init_every``-th 00 UTC of the held-out period, ``n_inits`` of them, each forecast ``members`` x 5 days, and
    scored with ``baselines`` (:data:`~sciml.forecasting.eval.score.BASELINES`).
    """

    config: str
    store: Path | None
    data: dict
    init_every: int
    n_inits: int
    expectations: Expectations
    next_step: str
    members: int = 8
    data_preset: str = "default"
    baselines: tuple[str, ...] = DEFAULT_BASELINES

    def store_path(self, out: Path) -> Path:
        """The demo's data store (its own under ``out`` unless the spec names a shared one)."""
        return self.store or Path(out) / "data" / f"swe-{self.config}.zarr"


QUICK_DEMO = DemoSpec(
    config="quick",
    store=None,
    data=QUICK_DATA,
    init_every=5,
    n_inits=5,
    expectations=QUICK,
    next_step="full demo: sciml forecast demo --full (make demo-forecast), about 18 min on an idle 2-core machine "
    "plus 3 min to build its year of data the first time",
)
#: 48 weekly cases (2004-01-01 .. 2004-11-25): bootstrap intervals over cases need tens of them; the physics
#: baseline's 48 x 9 five-day generator runs cost about 3 CPU minutes (bench/results/physics_baseline.json).
FULL_DEMO = DemoSpec(
    config="demo",
    store=FULL_STORE,
    data={},
    init_every=7,
    n_inits=48,
    expectations=FULL,
    next_step="the variants behind this config: python bench/forecast_experiments.py --list (bench/README.md)",
    baselines=("persistence", "climatology", "physics"),
)


def ensure_demo_store(store: Path, spec: DemoSpec) -> None:
    """Build the shallow-water store (with statistics) of demo ``spec`` unless it is already there."""
    from sciml.forecasting.data import PRESETS, compute_stats, simulate, source_from_dataset, stats_path, write_store

    if store.exists() and stats_path(store).exists():
        print(f"[1/5] data: using {store}")
        return
    cfg = dataclasses.replace(PRESETS[spec.data_preset], **spec.data)
    t0 = time.monotonic()
    ds, _ = simulate(cfg, default_progress())
    src = source_from_dataset(ds, path=store)
    write_store(src, store, overwrite=True)
    compute_stats(src).save(stats_path(store))
    print(f"[1/5] data: wrote {store} ({ds.sizes['time']} steps, {time.monotonic() - t0:.0f} s)")


def demo_inits(
    times: pd.DatetimeIndex,
    valid_start: str,
    spec: DemoSpec,
    lead: pd.Timedelta,
    input_steps: int = 1,
    step: pd.Timedelta | None = None,
) -> list[pd.Timestamp]:
    """Every ``spec.init_every``-th 00 UTC of the held-out period (from ``valid_start``) that leaves room for
    ``lead``, at most ``spec.n_inits`` of them. A model with ``input_steps`` m > 1 also needs the m-1 states
    ``step`` (default 6 h) apart before each initial time in the held-out period: initial times without them are
    skipped (the first held-out day); the others are the one-step model's, with one more at the end where there
    is room."""
    held = times[times >= pd.Timestamp(valid_start)]
    inits = [t for t in held if t.hour == 0 and t + lead <= held[-1]][:: spec.init_every]
    have = set(held.as_unit("ns").asi8)
    step = pd.Timedelta(hours=6) if step is None else step
    inits = [t for t in inits if all((t - j * step).as_unit("ns").value in have for j in range(1, input_steps))]
    return inits[: spec.n_inits]


def summary(spec: DemoSpec, scores, plots_dir: Path, files: list[Path]) -> tuple[list[str], int]:
    """The demo's closing summary and exit status (0, or :data:`MISSED_EXIT` if an expectation is missed).

    The lines: the expectations, one PASS/FAIL line per channel and criterion, the verdict, then the two lines a
    newcomer acts on: where the plots are, and what to run next (``spec.next_step``).
    """
    report, ok = spec.expectations.report(scores)
    lines = [spec.expectations.describe(), report]
    if "crps_physics_cases" in scores:
        lines.append(format_ratio_rows(ratio_rows(scores, REPORT_LEADS)))
    lines += [f"plots: {plots_dir}/ ({', '.join(Path(f).name for f in files)})", spec.next_step]
    return lines, 0 if ok else MISSED_EXIT


def demo_report(spec: DemoSpec, scores, facts: dict, timings: dict) -> dict:
    """What the demo measured, as JSON-ready data: its facts (config, cases, members), timings (wall and CPU
    seconds per stage), every check of its expectations, and the CRPS ratio rows with bootstrap intervals
    (:func:`~sciml.forecasting.eval.bootstrap.ratio_rows`, every lead) where the scores have per-case CRPS."""
    checks = spec.expectations.checks(scores)
    return {
        "demo": spec.expectations.name,
        **facts,
        "baselines": list(spec.baselines),
        "timings": {k: round(v, 1) for k, v in timings.items()},
        "checks": [dataclasses.asdict(c) for c in checks],
        "passed": bool(checks) and all(c.passed for c in checks),
        "ratios": ratio_rows(scores) if "crps_cases" in scores else [],
    }


def run_demo(
    out: Path,
    full: bool = False,
    members: int | None = None,
    overrides: dict | None = None,
    spec: DemoSpec | None = None,
    config: str | None = None,
) -> int:
    """Run the quick (or ``full``, or any ``spec``) demo into ``out``; returns 0 if its expectations are met,
    else :data:`MISSED_EXIT`. ``config`` trains another config (a built-in name or a YAML path) on the demo's data
    and holds it to the demo's expectations."""
    from sciml.forecasting.eval.plots import plot_all
    from sciml.forecasting.eval.score import ScoreConfig, format_table, score_forecast
    from sciml.forecasting.infer import InferConfig, run_inference
    from sciml.forecasting.train import CHECKPOINT_NAME, Trainer, load_train_config
    from sciml.runinfo import RunInfo, write_run_dir

    spec = spec or (FULL_DEMO if full else QUICK_DEMO)
    out = Path(out)
    store = spec.store_path(out)  # the demo's data, whatever config trains on it
    if config is not None:
        spec = dataclasses.replace(spec, config=config)
    load_train_config(spec.config)  # a config that does not exist or does not parse: one line before the data
    t_start, cpu_start = time.monotonic(), time.process_time()
    ensure_demo_store(store, spec)

    cfg = load_train_config(spec.config, {"data.store": str(store), **(overrides or {})})
    apply_threads(cfg.runtime)
    run_dir = out / "train"
    ckpt = run_dir / CHECKPOINT_NAME
    t0, cpu0 = time.monotonic(), time.process_time()
    trainer = Trainer(cfg, run_dir, resume=ckpt if ckpt.exists() else None, progress=default_progress())
    write_run_dir(run_dir, cfg, RunInfo(command="sciml forecast demo", seed=cfg.seed))
    trainer.run()
    last = trainer.log.valid[-1] if trainer.log.valid else {}
    timings = {"train_s": time.monotonic() - t0, "train_cpu_s": time.process_time() - cpu0}
    print(
        f"[2/5] train: {trainer.step} steps ({timings['train_s']:.0f} s, {timings['train_cpu_s']:.0f} CPU s), "
        "last validation " + " ".join(f"{k}={v:.3g}" for k, v in last.items() if k != "step")
    )

    from sciml.forecasting.data.dataset import open_canonical

    lead = pd.Timedelta(days=5)
    with open_canonical(store) as ds:
        step = pd.Timedelta(hours=cfg.data.step_hours)
        times = pd.DatetimeIndex(ds["time"].values)
        inits = demo_inits(times, cfg.data.valid_start, spec, lead, trainer.mc.input_steps, step)
    fc_path = out / "forecast.zarr"
    t0, cpu0 = time.monotonic(), time.process_time()
    members = members or spec.members
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
    timings.update(infer_s=time.monotonic() - t0, infer_cpu_s=time.process_time() - cpu0)
    print(
        f"[3/5] infer: {len(inits)} initial times x {members} members x 5 days -> {fc_path} "
        f"({timings['infer_s']:.0f} s)"
    )

    scores_path = out / "scores.nc"
    t0, cpu0 = time.monotonic(), time.process_time()
    score_cfg = ScoreConfig(forecast=fc_path, truth=store, out=scores_path, baselines=spec.baselines)
    scores = score_forecast(score_cfg, default_progress())
    timings.update(score_s=time.monotonic() - t0, score_cpu_s=time.process_time() - cpu0)
    print(
        f"[4/5] score: {scores_path} ({len(inits)} cases, baselines {','.join(spec.baselines)}; "
        f"{timings['score_s']:.0f} s, {timings['score_cpu_s']:.0f} CPU s)"
    )
    print(format_table(scores, REPORT_LEADS))

    files = plot_all(scores_path, out / "plots", fc_path, store)
    print(
        f"[5/5] plots written; forecasting demo done in {time.monotonic() - t_start:.0f} s "
        f"({time.process_time() - cpu_start:.0f} CPU s); outputs in {out}/ (train/ checkpoint and metrics, "
        f"forecast.zarr, scores.nc, {REPORT_NAME}, plots/)"
    )
    lines, status = summary(spec, scores, out / "plots", files)
    print("\n".join(lines))
    timings.update(total_s=time.monotonic() - t_start, total_cpu_s=time.process_time() - cpu_start)
    facts = {"config": spec.config, "store": str(store), "members": members, "inits": [str(t) for t in inits]}
    atomic_write_json(out / REPORT_NAME, demo_report(spec, scores, {**facts, "steps": trainer.step}, timings))
    return status
