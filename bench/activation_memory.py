"""Activation memory of one member and one rollout step: fp32 vs bf16, with and without block checkpointing.

    python bench/activation_memory.py    # tiny, demo and fcn3 at reduced grids -> bench/results/activation_memory.json

The bytes are those autograd keeps for the backward pass after one forward step (``saved_tensors_hooks``, each
storage once, weights excluded; with checkpointing the blocks' inputs are counted too), measured by
:func:`sciml.forecasting.plan.saved_activation_bytes` on CPU, where ``bf16`` is torch's CPU autocast (the same
casts as on a GPU). The ``fcn3`` rows use its channels and widths on smaller grids (``fcn3`` at 0.25 degrees is
what ``sciml forecast plan`` extrapolates to from such measurements).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from sciml.io import atomic_write_json

ROOT = Path(__file__).resolve().parent
DEFAULT_JSON = ROOT / "results" / "activation_memory.json"
CASES = (("tiny", None), ("demo", None), ("fcn3", (33, 64)), ("fcn3", (65, 128)))


def measure(preset_name: str, grid: tuple[int, int] | None) -> dict:
    from sciml.forecasting.models import preset
    from sciml.forecasting.plan import saved_activation_bytes, scaled_config

    cfg = preset(preset_name)
    if grid is not None:
        cfg = scaled_config(cfg, *grid)
    row: dict = {"preset": preset_name, "grid": f"{cfg.nlat}x{cfg.nlon}"}
    t0 = time.process_time()
    for precision in ("fp32", "bf16"):
        for blocks in (False, True):
            key = f"{precision}_{'blocks' if blocks else 'none'}"
            row[key] = saved_activation_bytes(cfg, checkpoint_blocks=blocks, precision=precision)
    row["cpu_s"] = time.process_time() - t0
    row["bf16_ratio"] = row["fp32_none"] / row["bf16_none"]
    row["blocks_ratio"] = row["fp32_none"] / row["fp32_blocks"]
    row["both_ratio"] = row["fp32_none"] / row["bf16_blocks"]
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = ap.parse_args(argv)
    rows = []
    for name, grid in CASES:
        rows.append(measure(name, grid))
        r = rows[-1]
        print(
            f"{r['preset']:>5} {r['grid']:>8}: fp32 {r['fp32_none'] / 2**20:8.1f} MiB, bf16 x{r['bf16_ratio']:.2f} "
            f"less, blocks x{r['blocks_ratio']:.2f} less, both x{r['both_ratio']:.2f} less ({r['cpu_s']:.1f} CPU s)"
        )
    atomic_write_json(args.json, {"rows": rows})
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
