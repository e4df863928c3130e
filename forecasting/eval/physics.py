r"""Perfect-model baseline of stores written by ``sciml data synth``: the generator's own dynamics from the truth.

On the built-in shallow-water data the best possible ensemble is known: the same equations run from the exact
initial state, each member with its own stochastic vorticity forcing :math:`F_\zeta`. It plays the role IFS-ENS
plays for WeatherBench 2: the bound a learned ensemble can approach, not a baseline any model beats.

For an initial time :math:`t_0` of the truth store:

1. the spectral model state :math:`(\Phi, \zeta, \delta)_{lm}` is recovered from the stored ``z500``, ``u500``,
   ``v500`` (:class:`~sciml.forecasting.data.swe.StateAnalysis`; exact up to the float32 rounding of the store);
2. ``physics``: ``M`` members (the forecast's member count) advance with the generator's
   :class:`~sciml.forecasting.data.swe.Integrator`; the forcing is an AR(1) process that cannot be seen in
   z/u/v, so each member's forcing at :math:`t_0` is drawn from its stationary distribution and then evolves
   with the member's own independent innovations;
3. ``physics_deterministic``: one run with :math:`F_\zeta \equiv 0`.

As in the generator, each sampling interval that starts at stored time :math:`T` feels the seasonal factor of
:math:`T + \Delta t_\text{sample}/2` (:func:`~sciml.forecasting.data.swe.seasonal_factor`), and the
Adams-Bashforth history starts empty (forward Euler, then AB2), as at the generator's own start. Each initial
time has its own random stream, seeded from ``(seed, t0)``: a case's members do not depend on which other cases
are scored. The runs use torch's current thread count (the scores do not depend on it beyond round-off).

Cost: ``cases x (M + 1)`` trajectories of the generator's dynamics over the longest lead, about 1.1 ms of one
core per trajectory and internal step at the built-in T32: 168 CPU s for the full demo's 48 cases x 9 runs x 5 days
(``bench/physics_baseline.py``, ``bench/results/physics_baseline.json``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
import xarray as xr

from sciml.errors import UsageError
from sciml.forecasting.data.swe import (
    LEVEL,
    BatchedShallowWater,
    Integrator,
    OutputSynth,
    StateAnalysis,
    SWEConfig,
    config_from_attrs,
    seasonal_factor,
    torch_threads,
)

#: Channels the generator writes, in :class:`~sciml.forecasting.data.swe.OutputSynth`'s order.
CHANNELS = (f"z{LEVEL}", f"u{LEVEL}", f"v{LEVEL}", f"vo{LEVEL}")
#: Channels the model state is recovered from.
STATE_CHANNELS = CHANNELS[:3]


def synth_config(truth: xr.Dataset, where: object) -> SWEConfig:
    """The generator settings of a truth store written by ``sciml data synth``; a usage error for any other store.

    Parameters
    ----------
    truth
        The opened canonical truth store.
    where
        The store's name in messages.
    """
    cfg = config_from_attrs(truth.attrs)
    if cfg is None:
        raise UsageError(
            f"the physics baseline needs a truth store written by `sciml data synth` (attribute swe_config); "
            f"{where} is not one: leave physics out of --baselines"
        )
    grid = (truth.attrs.get("grid_kind", cfg.grid), truth.sizes["lat"], truth.sizes["lon"])
    if grid != (cfg.grid, cfg.nlat, cfg.nlon):
        raise UsageError(
            f"{where}: the grid {grid[0]} {grid[1]}x{grid[2]} is not the one its generator wrote "
            f"({cfg.grid} {cfg.nlat}x{cfg.nlon}; regridded?); score physics against the store `sciml data synth` wrote"
        )
    missing = [c for c in STATE_CHANNELS if c not in truth.data_vars]
    if missing:
        raise UsageError(f"{where}: the physics baseline recovers the state from {STATE_CHANNELS}; {missing} missing")
    return cfg


def case_seed(seed: int, t0: pd.Timestamp) -> int:
    """Seed of the random stream of initial time ``t0`` (independent of the other cases)."""
    sec = int(pd.Timestamp(t0).as_unit("s").value)
    return int(np.random.SeedSequence([seed, sec % 2**63]).generate_state(1, dtype=np.uint64)[0] >> 1)


class ReplayIntegrator(Integrator):
    """The generator's integrator for ``cases`` blocks of ``1 + members`` rows: row 0 of each block unforced (the
    deterministic run), the others with an AR(1) forcing from the block's own generator."""

    def __init__(
        self,
        model: BatchedShallowWater,
        state: torch.Tensor,
        gens: Sequence[torch.Generator],
        members: int,
        forcing: torch.Tensor,
    ) -> None:
        super().__init__(model, state, gens[0])
        self.gens, self.members = list(gens), members
        self.forcing = forcing

    def next_forcing(self) -> torch.Tensor:
        f = self.forcing.view(len(self.gens), self.members + 1, *self.forcing.shape[1:])
        new = torch.zeros_like(f)
        for i, g in enumerate(self.gens):
            new[i, 1:] = self.m.forcing_step(f[i, 1:], g)
        return new.view(self.forcing.shape)


class PhysicsEnsemble:
    """Perfect-model ensemble and deterministic unforced run from the initial times ``inits`` of a synth store.

    Call :meth:`advance` with increasing leads; each call returns the fields at that lead (the runs are advanced
    in place, so only the current state is held).

    Parameters
    ----------
    truth
        Opened canonical truth store written by ``sciml data synth`` (:func:`synth_config` checks it).
    inits
        Initial times (each must be in the store).
    members
        Ensemble size ``M``.
    channels
        Output channels (a subset of :data:`CHANNELS`).
    seed
        Seed of the forcing streams.
    where
        The store's name in messages.
    threads
        Torch threads while integrating (default: the current setting).
    """

    def __init__(
        self,
        truth: xr.Dataset,
        inits: pd.DatetimeIndex,
        members: int,
        channels: Sequence[str],
        seed: int = 0,
        where: object = "truth store",
        threads: int | None = None,
    ) -> None:
        self.cfg = cfg = synth_config(truth, where)
        bad = [c for c in channels if c not in CHANNELS]
        if bad:
            raise UsageError(f"the physics baseline has channels {CHANNELS}, not {bad}; score those without physics")
        if members < 1:
            raise UsageError(f"the physics baseline needs at least 1 member, got {members}")
        self.inits = pd.DatetimeIndex(inits)
        self.members, self.threads = members, threads
        self.index = [CHANNELS.index(c) for c in channels]
        self.step = pd.Timedelta(hours=cfg.step_hours)
        self.substeps = int(round(cfg.step_hours * 3600 / cfg.dt))
        self.lead = pd.Timedelta(0)
        zuv = np.stack([truth[c].sel(time=self.inits).values for c in STATE_CHANNELS], axis=1)
        with torch_threads(threads), torch.no_grad():
            self.model = BatchedShallowWater(cfg)
            self.synth = OutputSynth(cfg)
            s0 = StateAnalysis(cfg)(self.model, torch.from_numpy(zuv.astype(np.float64)))
            gens = [torch.Generator().manual_seed(case_seed(seed, t)) for t in self.inits]
            f0 = torch.zeros(len(gens), members + 1, *s0.shape[-2:], dtype=torch.complex128)
            for i, g in enumerate(gens):
                f0[i, 1:] = self.model.stationary_forcing(members, g)
            state = s0.repeat_interleave(members + 1, dim=0)
            self.integ = ReplayIntegrator(self.model, state, gens, members, f0.flatten(0, 1))

    def advance(self, lead: pd.Timedelta) -> tuple[np.ndarray, np.ndarray]:
        """Run to ``lead`` (a multiple of the store's step, not before the current lead).

        Returns
        -------
        ensemble
            ``[cases, M, channels, nlat, nlon]`` float32 members.
        deterministic
            ``[cases, channels, nlat, nlon]`` float32 unforced run.
        """
        lead = pd.Timedelta(lead)
        n = (lead - self.lead) / self.step
        if n < 0 or abs(n - round(n)) > 1e-9:
            raise UsageError(
                f"the physics baseline advances in steps of {self.step} from {self.lead}; cannot reach lead {lead}"
            )
        m1 = self.members + 1
        with torch_threads(self.threads), torch.no_grad():
            for _ in range(int(round(n))):
                mid = self.inits + self.lead + self.step / 2
                seasonal = torch.tensor([seasonal_factor(t) for t in mid], dtype=torch.float64)
                seasonal = seasonal.repeat_interleave(m1)
                for _ in range(self.substeps):
                    self.integ.step(seasonal)
                self.lead = self.lead + self.step
            if not torch.isfinite(self.integ.s).all():
                raise UsageError(f"the physics baseline became unstable (NaN/inf) by lead {lead}")
            out = self.synth(self.model, self.integ.s)[:, self.index].astype(np.float32)
        out = out.reshape(len(self.inits), m1, *out.shape[1:])
        return out[:, 1:], out[:, 0]
