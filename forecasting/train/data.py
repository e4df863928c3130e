r"""Training samples: the datasets of a run, the facts a checkpoint keeps about them, the batch order.

The data order is a pure function of ``(seed, stage, step)``: position :math:`p = s B + b` of stage step
:math:`s` is sample ``perm_e[p mod n]`` of epoch :math:`e = \lfloor p/n \rfloor`, with ``perm_e`` a seeded
permutation. Resuming therefore only needs the step counter. :func:`stage_batches` serves that order from a
``DataLoader`` (worker processes, prefetch and pinned memory from the ``runtime`` section,
:mod:`sciml.forecasting.data.loader`).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from sciml.errors import UsageError
from sciml.forecasting.checkpoint import DataFacts
from sciml.forecasting.data.config import Split

from .config import TrainConfig
from .hooks import TrainHooks


def open_dataset(cfg: TrainConfig, rollout: int, split: Split, hooks: TrainHooks | None = None):
    """Training (``split='train'``) or validation windows of ``rollout`` steps, on the rank's tile, with as many
    earlier states as the model sees (its ``input_steps``)."""
    from sciml.forecasting.data import ForecastDataset

    from .network import input_steps

    d = cfg.data
    start, end = d.time_range(split)
    history = input_steps(cfg)
    try:
        ds = ForecastDataset(d, rollout, start=start, end=end, history=history)
        tile = hooks.tile(ds.grid.nlat, ds.grid.nlon) if hooks is not None else None
        return ds if tile is None else ForecastDataset(d, rollout, start=start, end=end, tile=tile, history=history)
    except UsageError as exc:
        if not Path(d.store).exists():
            raise UsageError(
                f"data store {d.store} does not exist; create it with `sciml data synth --out {d.store}` "
                "(the built-in shallow-water dataset) or `sciml data convert`"
            ) from None
        raise UsageError(f"{split} data: {exc}") from None


def data_facts(cfg: TrainConfig, ds) -> DataFacts:
    return DataFacts(
        store=str(cfg.data.store),
        stats=str(cfg.data.stats_file),
        channels=tuple(ds.channels),
        static=tuple(ds.static_names),
        features=tuple(cfg.data.features),
        feature_names=tuple(ds.feature_names),
        grid_kind=ds.grid.kind,
        nlat=ds.grid.nlat,
        nlon=ds.grid.nlon,
        step_hours=cfg.data.step_hours,
    )


@lru_cache(maxsize=8)
def _permutation(seed: int, stage: int, epoch: int, n: int) -> np.ndarray:
    from sciml.forecasting.noise import member_seed

    g = torch.Generator().manual_seed(member_seed(seed, 1_000_003 * (stage + 1) + epoch))
    return torch.randperm(n, generator=g).numpy()


def batch_indices(seed: int, stage: int, step: int, batch: int, n: int) -> list[int]:
    """Sample indices of stage step ``step`` (see the module docstring): a pure function of its arguments."""
    out = []
    for p in range(step * batch, (step + 1) * batch):
        out.append(int(_permutation(seed, stage, p // n, n)[p % n]))
    return out


def collate(samples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack dataset samples: ``input [B,C,H,W]``, ``target [B,k,C,H,W]``, ``aux [B,k+1,A,H,W]``, ``time``, and
    ``previous [B,m-1,C,H,W]`` when the samples hold earlier states (a model with ``input_steps`` m > 1).

    ``aux`` is the static fields followed by the time features at each window time (what the model takes as
    auxiliary input when it steps from that time).
    """

    def stack(ts: list[torch.Tensor]) -> torch.Tensor:
        # one sample: a view, no copy (in a loader worker the sample is already in shared memory); several:
        # default_collate stacks, in a worker straight into the shared memory the batch is sent through
        return ts[0].unsqueeze(0) if len(ts) == 1 else torch.utils.data.default_collate(ts)

    x = stack([s["input"] for s in samples])
    y = stack([s["target"] for s in samples])
    feats = stack([s["features"] for s in samples])  # [B, k+1, F, H, W]
    static = samples[0]["static"]  # [S, H, W]
    b, k1 = feats.shape[:2]
    st = static.reshape(1, 1, *static.shape).expand(b, k1, *static.shape)
    out = {
        "input": x,
        "target": y,
        "aux": torch.cat([st, feats], dim=2),
        "time": torch.stack([s["time"] for s in samples]),
    }
    if "previous" in samples[0]:
        out["previous"] = stack([s["previous"] for s in samples])
    return out


def stage_batches(
    cfg: TrainConfig, stage: int, ds, hooks: TrainHooks | None = None, device: torch.device | None = None
):
    """The batches of stage ``stage`` (:class:`~sciml.forecasting.data.loader.StepBatches`): step ``s`` is
    ``collate`` of this rank's rows (``hooks.batch_rows``) of :func:`batch_indices`, read by
    ``runtime.loader_workers`` processes with ``runtime.prefetch`` batches each in flight, pinned when the run's
    ``device`` is a GPU."""
    from sciml.forecasting.data.loader import StepBatches, pins_memory

    sc, rt = cfg.stages[stage], cfg.runtime
    rows = (hooks or TrainHooks()).batch_rows

    def indices(step: int) -> list[int]:
        return rows(batch_indices(cfg.seed, stage, step, sc.batch_size, len(ds)))

    pin = device is not None and pins_memory(device)
    return StepBatches(ds, indices, collate, sc.steps, workers=rt.loader_workers, prefetch=rt.prefetch, pin_memory=pin)
