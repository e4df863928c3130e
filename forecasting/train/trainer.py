r"""The training loop: curriculum stages of ensemble CRPS training with resumable, atomic checkpoints.

One optimiser step of a stage with rollout :math:`K`, ensemble :math:`N` and batch :math:`B`:

.. math::

    \hat u^{e}_0 = u(t),\qquad \hat u^{e}_{k} = F_\theta(\hat u^{e}_{k-1}, a_{k-1}, z^{e}_{k-1}),\qquad
    L = \frac1K \sum_{k=1}^{K} \Big[\mathrm{CRPS}_\alpha(\hat u_k, u(t+k\Delta))
        + w_s\,\mathrm{CRPS}^{\mathrm{spec}}_\alpha(\hat u_k, u(t+k\Delta))\Big],

with :math:`z^e` the AR(1) diffusion noise of member :math:`e` (a fresh stationary draw per step, AR updates
along the rollout) and gradients through the whole rollout. A two-step model (``input_steps: 2``) steps as
:math:`\hat u^{e}_{k} = F_\theta(\hat u^{e}_{k-1}, (\hat u^{e}_{k-1} - \hat u^{e}_{k-2})\,s, a_{k-1}, z^{e}_{k-1})`
with :math:`\hat u^{e}_{-1} = u(t-\Delta)` (the sample's ``previous``) and :math:`s` the per-channel
:math:`\sigma/\sigma_{\Delta t}` of the run's statistics; then gradient sync (a hook), clipping of the global
norm, Adam and the LR schedule. A non-finite loss or gradient norm either stops the run (``nan_policy: stop``; the
last good checkpoint is kept) or skips the step (``skip``, at most ``max_bad_steps`` in a row).

The loop (:meth:`Trainer.run`) only sequences steps; checkpoints (:mod:`.checkpoint`), metrics
(:class:`MetricsLog`) and rank-dependent choices (:class:`~.hooks.TrainHooks`) are separate.
"""

from __future__ import annotations

import csv
import functools
import io
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from sciml.errors import SciMLError, UsageError
from sciml.forecasting.checkpoint import (
    CHECKPOINT_NAME,
    generator_states,
    load_checkpoint,
    restore_generators,
    save_checkpoint,
)
from sciml.io import atomic_write_json, atomic_write_text
from sciml.progress import NoProgress, Progress

from . import data, network, objective
from .config import StageConfig, TrainConfig, config_from_dict
from .hooks import TrainHooks
from .resume import resume_changes

if TYPE_CHECKING:
    from sciml.forecasting.noise import NoiseStreams

LOGGER = logging.getLogger(__name__)


class NonFiniteError(SciMLError):
    """The loss or the gradients became NaN/inf and the policy is to stop."""


def lr_factor(stage: StageConfig, step: int) -> float:
    r"""Multiplier of ``stage.lr`` at stage step ``step``: linear warm-up, then constant, cosine or step decay.

    Cosine: :math:`r + (1-r)\tfrac12(1+\cos(\pi s/S))` over the steps after warm-up, :math:`r` = ``min_lr_ratio``.
    """
    if step < stage.warmup_steps:
        return (step + 1) / stage.warmup_steps
    s = step - stage.warmup_steps
    if stage.schedule == "constant":
        return 1.0
    if stage.schedule == "step":
        return stage.step_gamma ** (s // stage.step_every)
    span = max(1, stage.steps - stage.warmup_steps)
    r = stage.min_lr_ratio
    return r + (1 - r) * 0.5 * (1 + math.cos(math.pi * min(s, span) / span))


@dataclass
class MetricsLog:
    """Training and validation history; written as ``train.csv``, ``valid.csv`` and ``metrics.json``."""

    train: list[dict[str, float]] = field(default_factory=list)
    valid: list[dict[str, float]] = field(default_factory=list)

    def state(self) -> dict[str, Any]:
        return {"train": self.train, "valid": self.valid}

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> MetricsLog:
        return cls([dict(r) for r in d.get("train", [])], [dict(r) for r in d.get("valid", [])])

    @staticmethod
    def _csv(rows: list[dict[str, float]]) -> str:
        if not rows:
            return ""
        keys = list(dict.fromkeys(k for r in rows for k in r))
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
        return buf.getvalue()

    def write(self, out: Path, summary: dict[str, Any]) -> None:
        atomic_write_text(out / "train.csv", self._csv(self.train))
        atomic_write_text(out / "valid.csv", self._csv(self.valid))
        atomic_write_json(out / "metrics.json", {**summary, "last_validation": self.valid[-1] if self.valid else None})


@dataclass
class _Stage:
    index: int
    cfg: StageConfig
    data: Any
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    noise: NoiseStreams | None
    loss: torch.nn.Module
    batches: Any = None  # the stage's batches in step order (data.stage_batches), read ahead by loader workers


class Trainer:
    """Train an FCN3-style model with the curriculum of ``cfg``; outputs go to ``out``.

    Parameters
    ----------
    cfg
        The run configuration.
    out
        Run folder: ``config.yaml``, ``checkpoint.pt``, ``train.csv``, ``valid.csv``, ``metrics.json``.
    hooks
        Rank-dependent behaviour (:class:`~.hooks.TrainHooks`, serial by default).
    resume
        Checkpoint to continue from; the data position, RNG and optimiser states are restored so that the loss
        trajectory continues exactly as without the interruption.
    progress
        Progress reporter (nothing by default).
    """

    def __init__(
        self,
        cfg: TrainConfig,
        out: str | Path,
        hooks: TrainHooks | None = None,
        resume: str | Path | None = None,
        progress: Progress | None = None,
    ) -> None:
        from sciml.forecasting.data import NormStats
        from sciml.forecasting.models import FCN3
        from sciml.forecasting.noise import member_seed

        self.out = Path(out)
        self.hooks = hooks or TrainHooks()
        self.progress = progress or NoProgress()
        ckpt = load_checkpoint(resume, resume=True) if resume is not None else None
        if ckpt is not None:
            old = config_from_dict(ckpt["config"]["train"])
            refused, applied = resume_changes(old, cfg, int(ckpt["position"]["step"]))
            if refused:
                raise UsageError(
                    f"the config differs from the checkpoint's ({resume}) in {', '.join(refused)}: a resumed run "
                    "cannot change these (docs/robustness.md); resume with the run's own config (config.yaml in "
                    "its folder) or start a new run"
                )
            if applied:
                LOGGER.warning("resuming with changed %s: applied from step %d on", applied, ckpt["position"]["step"])
        self.cfg = cfg
        self.runtime = self.hooks.runtime(cfg.runtime)
        device = self.runtime.device
        ds0 = data.open_dataset(cfg, cfg.stages[0].rollout, "train", self.hooks)
        self.facts = data.data_facts(cfg, ds0)
        self.stats = NormStats.load(self.facts.stats)
        self._check_finite_stats()
        self.mc = network.model_config(cfg, self.facts)
        torch.manual_seed(member_seed(cfg.seed, 0))
        blocks = self.runtime.checkpointing == "blocks"
        self.model = FCN3(self.mc, self.hooks.sphere_ops(), checkpoint_blocks=blocks).to(device)
        if self.mc.input_steps == 2:  # a buffer of the state_dict: a resumed run restores the one it started with
            with torch.no_grad():
                self.model.tendency_scale.copy_(network.tendency_scale(self.stats, self.facts.channels))
        if self.model.degree_one is not None:  # buffers too: the winds' units, from the statistics it trains with
            idx = self.stats.index(list(self.facts.channels))
            std = torch.as_tensor(np.asarray(self.stats.std)[idx], dtype=torch.float32)
            self.model.degree_one.set_normalisation(torch.as_tensor(np.asarray(self.stats.mean)[idx]), std)
        # the compiled module shares its parameters with self.model, whose state_dict keys checkpoints keep
        self.net = torch.compile(self.model) if self.runtime.compile else self.model
        self.noise_scales = network.noise_scales(cfg, self.mc.n_noise)
        self.noise_process = network.make_noise(cfg, self.mc, self.noise_scales)
        if self.noise_process is not None:
            # draws stay on the members' CPU generators (the same members on every device); the spectra and the
            # inverse transform live on the device
            self.noise_process = self.noise_process.to(device)
        self.weights = objective.channel_weights(cfg, self.facts, self.stats)
        self.vector_pairs = objective.vector_pairs(cfg, self.facts.channels)
        self.degree_weights = objective.degree_weights(cfg, self._full_grid(ds0), self.vector_pairs)
        self.spectral_channels = objective.spectral_channel_weights(cfg, self.facts.channels, self.weights)
        self._datasets: dict[tuple[int, str], Any] = {(cfg.stages[0].rollout, "train"): ds0}
        self.step = 0
        self.bad_steps = 0
        self.log = MetricsLog()
        self.stage: _Stage | None = None
        self.stop_requested = False
        self.wall = 0.0
        self.steps_timed = 0  # optimiser steps of this process (the steps/s of run.json)
        self.last_good: Path | None = None  # the newest checkpoint known to hold finite weights
        if ckpt is not None:
            assert resume is not None  # ckpt was read from it
            self._check_same_data(ckpt, Path(resume))
            try:
                self._restore(ckpt)
            except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as exc:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise UsageError(
                    f"checkpoint {resume} does not fit this run ({type(exc).__name__}: {first}); it is damaged or "
                    "from another model: resume from another checkpoint or start a new run"
                ) from None
            self._check_finite_weights(Path(resume))
            self.last_good = Path(resume)

    # ------------------------------------------------------------------ components
    def _full_grid(self, ds):
        """``ds`` when it covers the whole grid, else the same windows on the whole grid (only when whitened
        spectral weights need whole fields: every rank computes the same weights from the same states)."""
        if not objective.uses_sample_fields(self.cfg) or ds.tile == ds.tile.full(ds.grid.nlat, ds.grid.nlon):
            return ds
        return data.open_dataset(self.cfg, ds.steps, "train")

    def dataset(self, rollout: int, split: str):
        key = (rollout, split)
        if key not in self._datasets:
            self._datasets[key] = data.open_dataset(self.cfg, rollout, split, self.hooks)
        return self._datasets[key]

    def _enter_stage(self, index: int) -> _Stage:
        from sciml.forecasting.noise import EnsembleNoise, member_seed

        sc = self.cfg.stages[index]
        opt = torch.optim.Adam(self.model.parameters(), lr=sc.lr, betas=sc.betas, weight_decay=sc.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, functools.partial(lr_factor, sc))
        noise = None
        if self.noise_process is not None:
            noise = EnsembleNoise(
                self.noise_process,
                sc.members,
                member_seed(self.cfg.seed, 100 + index),
                centered=sc.centered,
                member_indices=self.hooks.member_indices(sc.members),
            )
        loss = self.hooks.make_loss(
            objective.make_loss(
                self.cfg, sc, self.mc, self.weights, self.degree_weights, self.vector_pairs, self.spectral_channels
            )
        ).to(self.runtime.device)
        if self.stage is not None and self.stage.batches is not None:
            self.stage.batches.close()  # the previous stage's loader workers
        ds = self.dataset(sc.rollout, "train")
        batches = data.stage_batches(self.cfg, index, ds, self.hooks, self.runtime.device)
        self.stage = _Stage(index, sc, ds, opt, sched, noise, loss, batches)
        LOGGER.info(
            "stage %d/%d %r: %d steps, rollout %d, %d members x batch %d, %s CRPS%s, spectral weight %g, lr %.2e",
            index + 1,
            len(self.cfg.stages),
            sc.name,
            sc.steps,
            sc.rollout,
            sc.members,
            sc.batch_size,
            sc.crps,
            ", antithetic noise" if sc.centered else "",
            objective.spectral_weight(self.cfg, sc),
            sc.lr,
        )
        return self.stage

    # ------------------------------------------------------------------ checkpoints
    def payload(self) -> dict[str, Any]:
        st = self.stage
        return {
            "model": self.model.state_dict(),
            "optimizer": st.optimizer.state_dict() if st else None,
            "scheduler": st.scheduler.state_dict() if st else None,
            "rng": {
                "torch": torch.get_rng_state(),
                "noise": generator_states(st.noise.generators) if st and st.noise else [],
            },
            "position": {
                "step": self.step,
                "stage": st.index if st else -1,
                "bad_steps": self.bad_steps,
                "wall_s": self.wall,
            },
            "config": network.resolved_dict(self.cfg, self.mc),
            "model_config": network.resolved_dict(self.cfg, self.mc)["model"],
            "noise_scales_km": list(self.noise_scales),
            "data": {
                **self.facts.as_dict(),
                "mean": torch.as_tensor(self.stats.mean[self.stats.index(list(self.facts.channels))]),
                "std": torch.as_tensor(self.stats.std[self.stats.index(list(self.facts.channels))]),
            },
            "metrics": self.log.state(),
        }

    def checkpoint_path(self) -> Path:
        return self.out / CHECKPOINT_NAME

    def save(self) -> Path | None:
        path = None
        if not all(torch.isfinite(p).all() for p in self.model.parameters()):
            keep = f"the last good checkpoint {self.last_good} is kept" if self.last_good else "no checkpoint written"
            raise NonFiniteError(f"the weights became non-finite by step {self.step}; {keep}")
        path = save_checkpoint(self.checkpoint_path(), self.payload(), self.hooks.world_group())
        if path is not None:  # the writing rank
            self.last_good = path
            self.log.write(self.out, self.summary())
        self.hooks.barrier()
        return path

    def _check_finite_stats(self) -> None:
        """NaN/inf in the data make inf/NaN statistics: refuse before any step, naming the channels."""
        idx = self.stats.index(list(self.facts.channels))
        mean, std = np.asarray(self.stats.mean)[idx], np.asarray(self.stats.std)[idx]
        bad = [
            f"{c} (mean {m:g}, std {s:g})"
            for c, m, s in zip(self.facts.channels, mean, std, strict=True)
            if not (np.isfinite(m) and np.isfinite(s))
        ]
        if bad:
            raise UsageError(
                f"{self.facts.stats}: non-finite statistics of {', '.join(bad)}: the store has NaN/inf values; "
                f"`sciml data check {self.cfg.data.store}` lists them by channel and time"
            )

    def _check_same_data(self, ckpt: dict[str, Any], path: Path) -> None:
        """The store must still be on the checkpoint's grid with its channels (it may have been replaced)."""
        saved = ckpt["data"]
        now = self.facts.as_dict()
        keys = ("grid_kind", "nlat", "nlon", "channels", "static", "step_hours")
        diff = [k for k in keys if k in saved and list(_seq(saved[k])) != list(_seq(now[k]))]
        if diff:
            was = ", ".join(f"{k}={saved[k]}" for k in diff)
            got = ", ".join(f"{k}={now[k]}" for k in diff)
            raise UsageError(
                f"checkpoint {path} was trained on data with {was} but {self.cfg.data.store} now has {got}; resume "
                "on the store it was trained on, or start a new run"
            )

    def _check_finite_weights(self, path: Path) -> None:
        bad = [k for k, v in self.model.state_dict().items() if v.is_floating_point() and not torch.isfinite(v).all()]
        if bad:
            raise UsageError(
                f"checkpoint {path} holds non-finite weights ({', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''}); "
                "it is not a good checkpoint: resume from an earlier one or start a new run"
            )

    def _restore(self, ckpt: dict[str, Any]) -> None:
        pos = ckpt["position"]
        self.model.load_state_dict(ckpt["model"])
        self.step, self.bad_steps, self.wall = int(pos["step"]), int(pos["bad_steps"]), float(pos["wall_s"])
        self.log = MetricsLog.from_state(ckpt.get("metrics", {}))
        torch.set_rng_state(ckpt["rng"]["torch"])
        if self.step >= self.cfg.total_steps:
            return
        index = self.cfg.stage_at(self.step)[0]
        if int(pos["stage"]) == index:  # mid-stage: continue its optimiser, schedule and noise streams
            st = self._enter_stage(index)
            st.optimizer.load_state_dict(ckpt["optimizer"])
            st.scheduler.load_state_dict(ckpt["scheduler"])
            # The saved states carry the old stage's lr: the (possibly changed) config's applies from here on.
            st.scheduler.base_lrs = [st.cfg.lr for _ in st.optimizer.param_groups]
            for g in st.optimizer.param_groups:
                g["initial_lr"] = st.cfg.lr
                g["lr"] = st.cfg.lr * lr_factor(st.cfg, st.scheduler.last_epoch)
            st.scheduler._last_lr = [g["lr"] for g in st.optimizer.param_groups]
            if st.noise is not None:
                restore_generators(st.noise.generators, ckpt["rng"]["noise"])
        LOGGER.info("resumed at step %d of %d", self.step, self.cfg.total_steps)

    # ------------------------------------------------------------------ one step
    def batch(self, st: _Stage, stage_step: int) -> dict[str, torch.Tensor]:
        return st.batches.get(stage_step)  # data.batch_indices of the step (this rank's rows), collated

    def to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The batch's tensors on the run's device (asynchronous from pinned memory)."""
        from sciml.forecasting.data.loader import to_device

        return to_device(batch, self.runtime.device)

    def forward_rollout(self, x, aux, steps: int, noise, targets=None, loss=None, previous=None):
        """Roll the ensemble out ``steps`` steps; returns the mean loss (with ``targets``) or the states.

        ``previous`` ``[B, m-1, C, H, W]`` (a batch's ``previous``) gives a two-step model the state before ``x``;
        after the first step each member's previous state is its own last one.
        """
        from sciml.forecasting.losses import rollout_loss
        from sciml.forecasting.models import ensemble_step
        from sciml.forecasting.models.layers import at_least_fp32

        members = len(noise.member_indices) if noise is not None else 1
        state = x.unsqueeze(0).expand(members, *x.shape)
        z = [noise.initial(x.shape[0])] if noise is not None else [None]
        last = [None if previous is None else previous[:, -1].unsqueeze(0).expand(members, *x.shape)]

        def step_fn(s: torch.Tensor, k: int) -> torch.Tensor:
            if k > 0 and z[0] is not None:
                z[0] = noise.step(z[0])
            zg = noise.to_grid(z[0]) if z[0] is not None else None
            with self.runtime.autocast():  # bf16: the network only; losses and transforms outside stay fp32
                out = ensemble_step(self.net, s, aux[:, k], zg, last[0])
            if last[0] is not None:
                last[0] = s
            return at_least_fp32(out)

        if targets is not None:
            return rollout_loss(step_fn, state, [targets[:, k] for k in range(steps)], loss)
        out = []
        for k in range(steps):
            state = step_fn(state, k)
            out.append(state)
        return out

    def train_step(self, st: _Stage, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """One optimiser step; returns the logged scalars (``bad`` = 1 for a skipped non-finite step)."""
        self.model.train()
        st.optimizer.zero_grad(set_to_none=True)
        batch = self.to_device(batch)
        loss = self.forward_rollout(
            batch["input"], batch["aux"], st.cfg.rollout, st.noise, batch["target"], st.loss, batch.get("previous")
        )
        finite = bool(torch.isfinite(loss))
        gnorm = torch.tensor(float("nan"))
        if finite:
            loss.backward()
            self.hooks.sync_gradients(self.model)
            gnorm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), st.cfg.clip)
            finite = bool(torch.isfinite(gnorm))
        agreed = self.hooks.reduce_mean(torch.tensor([loss.detach().double(), 0.0 if finite else 1.0]))
        lr = st.optimizer.param_groups[0]["lr"]
        if agreed[1] > 0:
            st.optimizer.zero_grad(set_to_none=True)
            self._bad_step(st, float(loss.detach()), float(gnorm))
            st.scheduler.step()
            return {"loss": float("nan"), "grad_norm": float("nan"), "lr": lr, "bad": 1.0}
        st.optimizer.step()
        st.scheduler.step()
        self.bad_steps = 0
        return {"loss": float(agreed[0]), "grad_norm": float(gnorm), "lr": lr, "bad": 0.0}

    def _bad_step(self, st: _Stage, loss: float, gnorm: float) -> None:
        what = f"loss {loss}" if not math.isfinite(loss) else f"gradient norm {gnorm}"
        where = f"at step {self.step + 1} (stage {st.cfg.name!r})"
        last = self.last_good
        keep = f"the last good checkpoint is {last}" if last is not None else "no good checkpoint was written yet"
        if self.cfg.nan_policy == "stop":
            raise NonFiniteError(
                f"non-finite {what} {where}; stopped, {keep}. Lower stages[{st.index}].lr or the clip, check the "
                "data (`sciml data check`), or set nan_policy: skip"
            )
        self.bad_steps += 1
        LOGGER.warning("skipping step: non-finite %s %s (%d in a row)", what, where, self.bad_steps)
        if self.bad_steps >= self.cfg.max_bad_steps:
            raise NonFiniteError(f"{self.bad_steps} non-finite steps in a row {where}; stopped, {keep}")

    # ------------------------------------------------------------------ validation
    def validation_noise(self, noise: NoiseStreams, windows: int) -> NoiseStreams:
        """The validation ensemble's noise for ``windows`` windows (the distributed trainer tiles it)."""
        return noise

    @torch.no_grad()
    def validation_rollout(self) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]] | None:
        """The fixed held-out windows (``validation.samples``, evenly spaced) and their ``validation.members``
        ensemble rollouts (``validation.rollout`` steps), or ``None`` without a validation period.

        The noise is seeded from the run's seed alone, so every validation sees the same draws.
        """
        from sciml.forecasting.noise import EnsembleNoise, member_seed

        vc = self.cfg.validation
        if self.cfg.data.valid_start is None and self.cfg.data.valid_end is None:
            return None
        ds = self.dataset(vc.rollout, "valid")
        idx = sorted(set(np.linspace(0, len(ds) - 1, min(vc.samples, len(ds))).round().astype(int).tolist()))
        batch = self.to_device(data.collate([ds[i] for i in idx]))
        noise = None
        if self.noise_process is not None:
            noise = EnsembleNoise(
                self.noise_process,
                vc.members,
                member_seed(self.cfg.seed, 999),
                member_indices=self.hooks.member_indices(vc.members),
            )
            noise = self.validation_noise(noise, len(idx))
        self.model.eval()
        return batch, self.forward_rollout(
            batch["input"], batch["aux"], vc.rollout, noise, previous=batch.get("previous")
        )

    def validation_record(self, vals: torch.Tensor) -> dict[str, float]:
        """The log row of ``vals`` = (CRPS at the last step, CRPS over all steps, RMSE and spread at the last)."""
        rollout = self.cfg.validation.rollout
        return {
            "step": float(self.step),
            "val_crps": float(vals[1]),
            f"val_crps_{rollout}": float(vals[0]),
            f"val_rmse_{rollout}": float(vals[2]),
            f"val_ssr_{rollout}": float(vals[3] / vals[2]),
        }

    @torch.no_grad()
    def validate(self) -> dict[str, float] | None:
        """Fair CRPS, ensemble-mean RMSE and spread (normalised units) on fixed held-out windows."""
        from sciml.forecasting.losses import FairCRPS, GridCRPSLoss
        from sciml.forecasting.sphere import quadrature_weights

        rolled = self.validation_rollout()
        if rolled is None:
            return None
        batch, states = rolled
        crps_loss = GridCRPSLoss(self.mc.nlat, self.mc.nlon, FairCRPS()).to(self.runtime.device)
        q = quadrature_weights(self.mc.nlat, self.mc.nlon).float().to(self.runtime.device)
        crps, rmse, spread = [], [], []
        for k, fc in enumerate(states):
            y = batch["target"][:, k]
            crps.append(crps_loss.per_channel(fc, y).mean())
            rmse.append(((fc.mean(0) - y) ** 2 * q).sum((-2, -1)).mean().sqrt())
            spread.append((fc.var(0, unbiased=True) * q).sum((-2, -1)).mean().sqrt())
        vals = self.hooks.reduce_mean(torch.stack([crps[-1], torch.stack(crps).mean(), rmse[-1], spread[-1]]).double())
        return self.validation_record(vals)

    # ------------------------------------------------------------------ the loop
    def summary(self) -> dict[str, Any]:
        last = next((r for r in reversed(self.log.train) if r.get("bad", 0) == 0), None)
        return {
            "step": self.step,
            "total_steps": self.cfg.total_steps,
            "last_loss": last["loss"] if last else None,
            "wall_s": self.wall,
            "steps_per_s": self.steps_timed / self.wall if self.wall > 0 else None,
            "checkpoint": str(self.checkpoint_path()),
            **self.runtime.describe(),
            "peak_device_memory_bytes": self.runtime.peak_memory_bytes(),
        }

    def run(self, max_steps: int | None = None) -> str:
        """Train until the last stage ends (``'done'``), ``max_steps`` global steps are reached, or a stop is
        requested (``'interrupted'``, e.g. SIGUSR1 before a SLURM time limit); checkpoints on the way out."""
        total = self.cfg.total_steps
        end = total if max_steps is None else min(total, max_steps)
        if self.hooks.is_writer():
            self.out.mkdir(parents=True, exist_ok=True)
        if self.step >= end:
            LOGGER.info("nothing to do: the run is at step %d of %d", self.step, end)
            return "done"
        self.progress.start(end - self.step, f"train {self.cfg.name}")
        status = "done"
        try:
            while self.step < end:
                index, sc, stage_step = self.cfg.stage_at(self.step)
                st = self.stage if self.stage is not None and self.stage.index == index else self._enter_stage(index)
                t0 = time.monotonic()
                row = self.train_step(st, self.batch(st, stage_step))
                self.wall += time.monotonic() - t0
                self.steps_timed += 1
                self.step += 1
                self.log.train.append({"step": float(self.step), "stage": float(index), **row})
                self.progress.update(1, {"loss": row["loss"], "lr": row["lr"]})
                if self.step % self.cfg.validation.every == 0 or self.step == total:
                    v = self.validate()
                    if v is not None:
                        self.log.valid.append(v)
                        LOGGER.info("step %d validation: %s", self.step, _fmt(v))
                stage_end = stage_step + 1 == sc.steps
                if self.stop_requested:
                    status = "interrupted"
                    break
                if self.step % self.cfg.checkpoint_every == 0 or stage_end or self.step == end:
                    self.save()
        finally:
            self.progress.close()
            if self.stage is not None:
                self.stage.batches.close()  # stop the loader workers; a later run() starts them again
        if status == "interrupted":
            self.save()
            LOGGER.warning("stop requested: checkpoint written at step %d; continue with --resume", self.step)
        return status


def _seq(v: Any) -> Any:
    return v if isinstance(v, (list, tuple)) else [v]


def _fmt(d: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.4g}" for k, v in d.items() if k != "step")
