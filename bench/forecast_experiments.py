"""Variants of the full forecasting demo, trained from scratch and scored against the full demo's skill targets.

    python bench/forecast_experiments.py                        # every variant of bench/forecast_variants.yaml
    python bench/forecast_experiments.py --only demo,seed-1 --jobs 2
    python bench/forecast_experiments.py --only winds --seeds 0,1,2  # winds, winds-seed-1, winds-seed-2
    python bench/forecast_experiments.py --list

Each variant is ``sciml forecast demo --full`` with ``--set`` overrides of forecasting/configs/forecast/demo.yaml
(one process per variant, one thread each, ``--jobs`` at a time), so it trains the steps its variant sets (540 for
most, 870 for the shipped demo), infers the demo's initial
times (48 weekly ones of the held-out year; the rows in bench/results/forecast_experiments.json were run with the
earlier 12) x 8 members x 5 days and scores them exactly as the demo does, the physics baseline included (about 3
CPU minutes per variant; the same numbers for every variant). A variant with scores is only
re-read (``--redo`` runs it again; an interrupted one resumes from its checkpoint). Prints a table of the targets
(largest CRPS ratio to the three baselines, SSR range at 1-5 days, member/truth power at 5 days for l = 1..16) and
writes JSON: rows of the variants run here replace those of the same name in an existing results file, the others
are kept. ``--seeds`` runs every chosen variant with each seed (``NAME-seed-S``; seed 0 is ``NAME``) and says how
many seeds meet every target: seeds move the targets as much as most settings, so a setting is only known to work
once several seeds agree. docs/benchmarks.md tabulates these numbers; expect 20-30 min per variant at one
thread.

``--quick`` does the same for the short demo (``sciml forecast demo``, forecasting/configs/forecast/quick.yaml):
variants of ``bench/quick_variants.yaml`` into ``runs/bench/quick``, checked against the quick demo's
expectations, with the training steps and the CPU seconds of each run (a few minutes per variant;
``bench/quick_demo.md`` is the journal of the quick recipe):

    python bench/forecast_experiments.py --quick --only quick --seeds 0,1,2 --threads 2 --jobs 1 \
        --json bench/results/quick_demo.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def load_variants(path: Path) -> dict[str, dict]:
    """``{name: {about: str, set: {dotted.key: value}}}`` from the variants YAML (unknown keys are errors)."""
    raw = yaml.safe_load(path.read_text()) or {}
    out = {}
    for name, spec in raw.items():
        spec = spec or {}
        unknown = set(spec) - {"about", "set"}
        if unknown:
            raise SystemExit(f"{path}: variant {name!r} has unknown keys {sorted(unknown)} (allowed: about, set)")
        out[str(name)] = {"about": str(spec.get("about", "")), "set": dict(spec.get("set") or {})}
    return out


def with_seeds(variants: dict[str, dict], names: list[str], seeds: list[int]) -> tuple[dict[str, dict], list[str]]:
    """Each of ``names`` once per seed: ``NAME`` for seed 0 (the variant as written: its own seed, else the
    config's), ``NAME-seed-S`` with ``seed: S`` set (replacing the variant's own).

    The variants built on ``demo-s5`` carry seed 1, the demo config's seed when their rows were run, so that
    ``NAME`` keeps its meaning when demo.yaml's seed changes.
    """
    if not seeds:
        return variants, names
    out, run = dict(variants), []
    for n in names:
        for seed in seeds:
            name = seed_name(n, seed)
            if seed != 0:
                out[name] = {"about": f"as {n}, with seed {seed}", "set": {**variants[n]["set"], "seed": seed}}
            run.append(name)
    return out, run


def seed_name(name: str, seed: int) -> str:
    """The name :func:`with_seeds` gives variant ``name`` run with ``seed``."""
    return name if seed == 0 else f"{name}-seed-{seed}"


def seed_summary(rows: list[dict], names: list[str], seeds: list[int]) -> list[str]:
    """``NAME: k of n seeds meet every target`` for each variant of ``names`` swept over ``seeds``."""
    passed = {r["variant"]: r.get("passed", False) for r in rows}
    lines = []
    for n in names:
        ok = [str(s) for s in seeds if passed.get(seed_name(n, s), False)]
        lines.append(f"{n}: {len(ok)} of {len(seeds)} seeds meet every target (seeds {', '.join(ok) or 'none'})")
    return lines


def merge_rows(path: Path, rows: list[dict]) -> list[dict]:
    """The rows of an existing results file with those of ``rows`` replaced (same variant) or appended.

    Each row keeps the thread count it ran at: an old row without its own takes the file's (the thread count of
    the run that wrote it), since the file's is replaced by this run's. A failed run (``rc`` not 0) does not
    replace a row of the same variant: the scores of the last run that worked are kept. A row whose scores were
    only re-read keeps the cost and thread count of the run that made them (the re-read took no time)."""
    data = json.loads(path.read_text()) if path.exists() else {"rows": []}
    old = [r if "threads" in r or "threads" not in data else {**r, "threads": data["threads"]} for r in data["rows"]]
    have = {r["variant"]: r for r in old}
    rows = [r for r in rows if r.get("rc", 0) == 0 or r["variant"] not in have]
    cost = ("threads", "wall_s", "cpu_s")
    rows = [
        {**r, **{k: have[r["variant"]][k] for k in cost if k in have[r["variant"]]}}
        if r.get("reused") and r["variant"] in have
        else r
        for r in rows
    ]
    new = {r["variant"]: r for r in rows}
    merged = [new.pop(r["variant"], r) for r in old]
    return merged + [r for r in rows if r["variant"] in new]


def sciml_command() -> list[str]:
    exe = Path(sys.executable).with_name("sciml")
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-c", "import sys; from sciml.cli import main; sys.exit(main(sys.argv[1:]))"]


def run_variant(name: str, spec: dict, out: Path, threads: int, redo: bool = False, quick: bool = False) -> dict:
    """Train, infer and score one variant in a subprocess (resuming what is there); returns rc and wall time.

    A variant whose ``scores.nc`` exists is not run again, unless ``redo``. Runs in a worker thread, so it only
    waits on the subprocess (HDF5 reads are not thread-safe: :func:`collect` reads the scores afterwards).
    """
    vdir = out / name
    vdir.mkdir(parents=True, exist_ok=True)
    sets = {"runtime.threads": threads, **spec["set"]}
    cmd = [*sciml_command(), "forecast", "demo", *([] if quick else ["--full"]), "--out", str(vdir)]
    for k, v in sets.items():
        cmd += ["--set", f"{k}={json.dumps(v)}"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    t0 = time.monotonic()
    reused = (vdir / "scores.nc").exists() and not redo
    rc, cpu_s = 0, None
    if not reused:
        started = time.time()
        with open(vdir / "log.txt", "w") as log:
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
            _, status, usage = os.wait4(proc.pid, 0)  # this child's own CPU time (threads run concurrently)
            proc.returncode = rc = os.waitstatus_to_exitcode(status)
            cpu_s = usage.ru_utime + usage.ru_stime
        scored = (vdir / "scores.nc").exists() and (vdir / "scores.nc").stat().st_mtime >= started
        if rc == 1 and scored:
            rc = 0  # the demo exits 1 when it misses its targets (scores written): collect() reports which
    row = {"variant": name, "about": spec["about"], "set": spec["set"], "rc": rc, "reused": reused}
    row["threads"] = threads
    row["wall_s"] = time.monotonic() - t0
    if cpu_s is not None:
        row["cpu_s"] = cpu_s
    if rc != 0:
        row["error"] = f"exit {rc}; see {vdir / 'log.txt'}"
    return row


def collect(row: dict, out: Path, quick: bool = False) -> dict:
    """Add the variant's checks against its demo's expectations (and its training steps and wall time) to ``row``."""
    import xarray as xr

    from sciml.forecasting.demo import FULL_DEMO, QUICK_DEMO

    if row["rc"] != 0:
        return row
    vdir = out / row["variant"]
    with xr.open_dataset(vdir / "scores.nc") as scores:
        checks = (QUICK_DEMO if quick else FULL_DEMO).expectations.checks(scores)
    row["checks"] = [c.__dict__ for c in checks]
    row["passed"] = all(c.passed for c in checks)
    metrics = vdir / "train" / "metrics.json"
    m = json.loads(metrics.read_text()) if metrics.exists() else {}
    row["train_wall_s"], row["train_steps"] = m.get("wall_s"), m.get("step")
    report = vdir / "report.json"
    if not quick and report.exists():
        row.update(physics_ratios(json.loads(report.read_text())))
    return row


#: Leads (hours) at which a full variant's CRPS over the perfect-model ensemble is kept in its row.
PHYSICS_LEADS = (6.0, 24.0, 72.0, 120.0)


def physics_ratios(report: dict) -> dict:
    """The learned / perfect-model CRPS ratios of a full demo's ``report.json`` at :data:`PHYSICS_LEADS`.

    ``{"n_cases": N, "ratio_physics": [{"channel", "lead_hours", "ratio": [value, low, high]}, ...]}`` (95 %
    bootstrap interval over the cases); empty when the report has no physics baseline (stores not made by
    ``sciml data synth``).
    """
    rows = [r for r in report.get("ratios", []) if "ratio_physics" in r and r["lead_hours"] in PHYSICS_LEADS]
    if not rows:
        return {}
    return {
        "n_cases": len(report.get("inits", [])),
        "ratio_physics": [
            {"channel": r["channel"], "lead_hours": r["lead_hours"], "ratio": r["ratio_physics"]} for r in rows
        ],
    }


_CRPS_TARGETS = ("CRPS / persistence", "CRPS / climatology", "CRPS / climatology_ensemble")


def table(rows: list[dict]) -> str:
    """One line per variant and channel: worst CRPS ratio, SSR range, power-ratio range, verdict."""
    w = max([len("variant"), *(len(r["variant"]) for r in rows)])
    head = (
        f"{'variant':<{w}} {'ch':<5} {'CRPS/pers':>9} {'CRPS/clim':>9} {'CRPS/ens':>9} {'SSR 1-5d':>11} "
        f"{'P ratio l<=16':>14}  ok"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        if "checks" not in r:
            lines.append(f"{r['variant']:<{w}} {r.get('error', 'not run')}")
            continue
        by = {}
        for c in r["checks"]:
            by.setdefault(c["channel"], {})[c["target"]] = c
        for ch, cs in by.items():
            crps = [f"{cs[t]['high']:.3f}" if t in cs else "-" for t in _CRPS_TARGETS]
            ssr = f"{cs['ssr']['low']:.2f}-{cs['ssr']['high']:.2f}" if "ssr" in cs else "-"
            psd = cs["P_member/P_truth"]
            ok = "yes" if all(c["passed"] for c in cs.values()) else "NO"
            lines.append(
                f"{r['variant']:<{w}} {ch:<5} {crps[0]:>9} {crps[1]:>9} {crps[2]:>9} {ssr:>11} "
                f"{psd['low']:>6.2f}-{psd['high']:<7.2f}  {ok}"
            )
    return "\n".join(lines)


def checks_table(rows: list[dict]) -> str:
    """One line per variant and channel with every check's measured range (CRPS ratios: the largest), the
    training steps and CPU seconds of the run, and the verdict (the quick demo's table)."""
    w = max([len("variant"), *(len(r["variant"]) for r in rows)])
    cols = list(dict.fromkeys((c["target"], c["where"]) for r in rows for c in r.get("checks", [])))
    names = [t.replace("P_member/P_truth", "P " + where.split("l=")[-1]) for t, where in cols]
    head = f"{'variant':<{w}} {'ch':<5} " + " ".join(f"{n:>14}" for n in names) + f" {'steps':>5} {'CPU s':>6}  ok"
    lines = [head, "-" * len(head)]
    for r in rows:
        if "checks" not in r:
            lines.append(f"{r['variant']:<{w}} {r.get('error', 'not run')}")
            continue
        by: dict[str, dict] = {}
        for c in r["checks"]:
            by.setdefault(c["channel"], {})[(c["target"], c["where"])] = c
        cpu = f"{r['cpu_s']:.0f}" if r.get("cpu_s") is not None else "-"
        for ch, cs in by.items():
            vals = []
            for key in cols:
                c = cs.get(key)
                if c is None:
                    vals.append("-")
                elif key[0].startswith("CRPS"):
                    vals.append(f"{c['high']:.3f}")
                else:
                    vals.append(f"{c['low']:.2f}-{c['high']:.2f}")
            ok = "yes" if all(c["passed"] for c in cs.values()) else "NO"
            lines.append(
                f"{r['variant']:<{w}} {ch:<5} "
                + " ".join(f"{v:>14}" for v in vals)
                + f" {r.get('train_steps') or '-':>5} {cpu:>6}  {ok}"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="variants of the quick demo (default: the full demo)")
    ap.add_argument("--variants", type=Path, default=None, help="variants YAML (default forecast_variants.yaml)")
    ap.add_argument("--only", default="", help="comma-separated variant names (default: all)")
    ap.add_argument("--jobs", type=int, default=2, help="variants run at once (one thread each by default)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per variant")
    ap.add_argument("--out", type=Path, default=None, help="run folders (default runs/bench/forecast or quick)")
    ap.add_argument("--json", type=Path, default=None, help="results file (default OUT/results.json)")
    ap.add_argument("--list", action="store_true", help="list the variants and exit")
    ap.add_argument("--redo", action="store_true", help="re-run variants that already have scores")
    ap.add_argument("--seeds", default="", help="comma-separated seeds to run each variant with (0: its own)")
    args = ap.parse_args(argv)
    kind = "quick" if args.quick else "forecast"
    args.variants = args.variants or HERE / f"{kind}_variants.yaml"
    args.out = args.out or ROOT / "runs" / "bench" / kind

    variants = load_variants(args.variants)
    if args.list:
        for name, spec in variants.items():
            print(f"{name:<22} {spec['about']}  {spec['set']}")
        return
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(variants)
    missing = [n for n in names if n not in variants]
    if missing:
        raise SystemExit(f"unknown variant(s) {missing}; known: {', '.join(variants)} (see --list)")
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        raise SystemExit(f"--seeds must be comma-separated integers, got {args.seeds!r}") from None
    variants, runs = with_seeds(variants, names, seeds)

    sys.path.insert(0, str(ROOT))
    from sciml.forecasting.demo import FULL_DEMO, FULL_STORE, ensure_demo_store

    os.chdir(ROOT)
    if not args.quick:
        ensure_demo_store(FULL_STORE, FULL_DEMO)  # once, before the parallel jobs share it
    print(f"{len(runs)} variant(s), {args.jobs} at a time, {args.threads} thread(s) each -> {args.out}", flush=True)
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = {
            n: pool.submit(run_variant, n, variants[n], args.out, args.threads, args.redo, args.quick) for n in runs
        }
        rows = []
        for n, f in futures.items():
            r = f.result()
            rows.append(r)
            state = "scores re-read" if r["reused"] else ("done" if r["rc"] == 0 else r["error"])
            print(f"  {n}: {state} ({r['wall_s']:.0f} s)", flush=True)
    rows = [collect(r, args.out, args.quick) for r in rows]
    print(checks_table(rows) if args.quick else table(rows))
    for line in seed_summary(rows, names, seeds) if seeds else []:
        print(line)
    path = args.json or args.out / "results.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    merged = merge_rows(path, rows)
    tmp = path.with_name(path.name + ".tmp")  # atomic: an interrupted write keeps the previous results
    tmp.write_text(json.dumps({"rows": merged, "threads": args.threads, "jobs": args.jobs}, indent=1, default=str))
    tmp.replace(path)
    print(f"wrote {path} ({len(rows)} row(s) of {len(merged)})")


if __name__ == "__main__":
    main()
