r"""Built-in default dataset: forced shallow water on the rotating sphere, written as an ERA5-style store.

The model is the shallow-water system of ``torch_harmonics.examples.ShallowWaterSolver`` (vorticity
:math:`\zeta`, divergence :math:`\delta`, geopotential :math:`\Phi = g h`), advanced for several independent
trajectories at once as one batched spectral state, with three additions that give it a stationary,
seasonally varying climate (unforced flow only decays):

.. math::

    \partial_t \zeta &= -\nabla\cdot\big((\zeta + f)\,\mathbf u\big) - \zeta/\tau_d + F_\zeta,\qquad
    \partial_t \delta = \mathbf k\cdot\nabla\times\big((\zeta+f)\mathbf u\big)
        - \nabla^2\big(\Phi + \tfrac12|\mathbf u|^2\big) - \delta/\tau_d,\\
    \partial_t \Phi &= -\nabla\cdot(\Phi\,\mathbf u) - \big(\Phi - \Phi_\text{eq}(\varphi, t)\big)_{l\ge 1}/\tau_r,

* relaxation of :math:`\Phi` toward a radiative-equilibrium profile
  :math:`\Phi_\text{eq} = gH + \Delta\Phi\,(\tfrac13 - \sin^2\varphi) + \Delta\Phi_s \sin\varphi\,
  \sin\big(2\pi(d - 80)/365.25\big)` (day of year :math:`d`: the summer hemisphere is "warmer"), applied to
  degrees :math:`l \ge 1` only, so the global mean :math:`\Phi_{00}` (the mass) is conserved exactly;
* Rayleigh drag :math:`\tau_d` on the winds;
* stochastic vorticity forcing :math:`F_\zeta`: an AR(1) process in spherical-harmonic space on degrees
  :math:`l_f \pm 2` (decorrelation time :math:`\tau_f`), which keeps the jets turbulent,

plus the solver's implicit hyperdiffusion on :math:`\zeta, \delta`. Time stepping is the solver's third-order
Adams-Bashforth scheme. Initial conditions are random and balanced: a random stream function and
:math:`\Phi` from the nonlinear balance equation (zero :math:`\partial_t\delta`), followed by a spin-up that is
discarded.

For speed the dynamics run at a coarse internal truncation (default T32 on a 48x96 Gauss grid, dt = 600 s) and
every 6-hourly sample is synthesised spectrally on the requested output grid (default the torch-harmonics
equiangular 64x128 grid, poles included). Output channels at the nominal level 500: ``z500`` (geopotential,
m2 s-2), ``u500``, ``v500`` (m s-1), ``vo500`` (relative vorticity, s-1). Trajectories are laid end to end in
time; the ``segment`` coordinate says which trajectory a time step belongs to, so no training window crosses one.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import xarray as xr

from sciml.errors import UsageError
from sciml.progress import NoProgress, Progress

from .contract import finalize_canonical
from .grid import Grid

RADIUS = 6.37122e6
OMEGA = 7.292e-5
GRAVITY = 9.80616
LEVEL = 500


@dataclass(frozen=True)
class SWEConfig:
    """Settings of the shallow-water dataset generator (``sciml data synth``).

    The defaults are the built-in dataset: 4 trajectories x 365 days at 64x128, 6-hourly.
    """

    nlat: int = 64
    nlon: int = 128
    grid: str = "equiangular"
    days: float = 365.0
    trajectories: int = 4
    groups: int = 2  # trajectories advance in this many batches (one random stream each; parallel with --workers)
    seed: int = 0
    spinup_days: float = 30.0
    step_hours: int = 6
    truncation: int = 32
    dt: float = 1200.0
    start: str = "2001-01-01"
    mean_depth: float = 4.0e3
    eq_amplitude: float = 2000.0  # m of height, equator-pole contrast of Phi_eq / g
    seasonal_amplitude: float = 600.0  # m of height
    tau_rad_days: float = 10.0
    tau_drag_days: float = 10.0
    forcing_degree: int = 10
    forcing_amplitude: float = 1.5e-10  # s-2, rms of F_zeta
    forcing_tau_days: float = 1.0

    def __post_init__(self) -> None:
        if self.grid not in ("equiangular", "gaussian"):
            raise ValueError(f"grid must be 'equiangular' or 'gaussian', got {self.grid!r}")
        if self.trajectories < 1 or self.days <= 0 or self.spinup_days < 0:
            raise ValueError("need trajectories >= 1, days > 0 and spinup_days >= 0")
        if not 1 <= self.groups <= self.trajectories:
            raise ValueError(f"groups must be between 1 and trajectories ({self.trajectories}), got {self.groups}")
        if self.truncation < 4:
            raise ValueError(f"truncation must be >= 4, got {self.truncation}")
        max_l = (self.nlat + 1) // 2 if self.grid == "equiangular" else self.nlat
        if self.truncation > max_l:
            raise ValueError(
                f"truncation T{self.truncation} exceeds what the {self.grid} {self.nlat}-latitude output grid "
                f"resolves (lmax {max_l}); lower --truncation or raise --nlat"
            )
        steps = self.step_hours * 3600.0 / self.dt
        if abs(steps - round(steps)) > 1e-9 or steps < 1:
            raise ValueError(f"dt={self.dt} s must divide the sampling step of {self.step_hours} h")
        if not self.forcing_degree + 2 < self.truncation:
            raise ValueError(f"forcing_degree+2 ({self.forcing_degree + 2}) must be below truncation")

    @property
    def samples_per_trajectory(self) -> int:
        return int(round(self.days * 24 / self.step_hours))

    @property
    def internal_grid(self) -> tuple[int, int]:
        """Gauss grid for the products: nlat >= 3T/2 avoids aliasing of quadratic terms."""
        nlat = 2 * math.ceil(3 * self.truncation / 4)
        return nlat, 2 * nlat


PRESETS = {
    "default": SWEConfig(),
    # seconds: tests and quick demos
    "tiny": SWEConfig(nlat=33, nlon=64, days=8, trajectories=2, groups=1, spinup_days=2, truncation=16, dt=2400.0),
}


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """``n`` torch intra-op threads inside the block (``None``: unchanged), the previous count restored after.
    Simulation runs at one thread: bitwise reproducibility must not depend on the core count."""
    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


class BatchedShallowWater(torch.nn.Module):
    """Forced shallow-water tendencies for a batch of spectral states ``[B, 3, L, M]`` (Phi, zeta, delta).

    Uses torch-harmonics' scalar and vector SHTs (``csphase=False``, orthonormal) as the
    ``ShallowWaterSolver`` does, but with the batch dimension in front so that all trajectories advance in one
    call per step (the per-step cost at these sizes is dominated by Python overhead, not arithmetic).
    """

    # buffers (registered in __init__), declared for type checkers
    lap: torch.Tensor
    invlap: torch.Tensor
    tril: torch.Tensor
    coriolis: torch.Tensor
    hyperdiff: torch.Tensor
    not_mean: torch.Tensor
    band: torch.Tensor
    phi_eq0: torch.Tensor
    phi_eq1: torch.Tensor

    def __init__(self, cfg: SWEConfig) -> None:
        super().__init__()
        import torch_harmonics as th
        from torch_harmonics.quadrature import precompute_latitudes

        self.cfg = cfg
        nlat, nlon = cfg.internal_grid
        L = M = cfg.truncation
        kw = dict(lmax=L, mmax=M, grid="legendre-gauss", csphase=False)
        self.sht = th.RealSHT(nlat, nlon, **kw).double()
        self.isht = th.InverseRealSHT(nlat, nlon, **kw).double()
        self.vsht = th.RealVectorSHT(nlat, nlon, **kw).double()
        self.ivsht = th.InverseRealVectorSHT(nlat, nlon, **kw).double()
        colat, _ = precompute_latitudes(nlat, grid="legendre-gauss")
        lat = (math.pi / 2 - colat).double()
        l = torch.arange(L, dtype=torch.float64)[:, None].expand(L, M)
        lap = -l * (l + 1) / RADIUS**2
        invlap = torch.where(l > 0, 1.0 / torch.where(l > 0, lap, 1.0), 0.0)
        self.register_buffer("lap", lap)
        self.register_buffer("invlap", invlap)
        self.register_buffer("tril", torch.tril(torch.ones(L, M, dtype=torch.float64)))
        self.register_buffer("coriolis", (2 * OMEGA * torch.sin(lat))[:, None])
        self.register_buffer("hyperdiff", torch.exp((-cfg.dt / 2 / 3600.0) * (lap / lap[-1, 0]) ** 4))
        self.register_buffer("not_mean", (l > 0).double())
        band = (l >= cfg.forcing_degree - 2) & (l <= cfg.forcing_degree + 2)
        self.register_buffer("band", band.double() * self.tril)
        sinlat = torch.sin(lat)[:, None].expand(nlat, nlon)
        g = GRAVITY
        base = g * cfg.mean_depth + g * cfg.eq_amplitude * (1.0 / 3.0 - sinlat**2)
        self.register_buffer("phi_eq0", self.sht(base))
        self.register_buffer("phi_eq1", self.sht(g * cfg.seasonal_amplitude * sinlat))
        # rms of F over the sphere = forcing_amplitude: sum over the band of |c_lm|^2 (m>0 twice) / (4 pi)
        nmodes = float((self.band[:, :1].sum() + 2 * self.band[:, 1:].sum()).item())
        self.forcing_sigma = cfg.forcing_amplitude * math.sqrt(4 * math.pi / nmodes)

    def vrtdiv(self, uv: torch.Tensor) -> torch.Tensor:
        """Spectral (vorticity, divergence) of a grid vector field ``[..., 2, nlat, nlon]``."""
        return self.lap * RADIUS * self.vsht(uv)

    def uv(self, vrtdiv: torch.Tensor) -> torch.Tensor:
        """Grid winds from spectral (vorticity, divergence)."""
        return self.ivsht(self.invlap * vrtdiv / RADIUS)

    def phi_eq(self, seasonal: torch.Tensor) -> torch.Tensor:
        """Spectral Phi_eq for each trajectory's seasonal factor ``[B]``."""
        return self.phi_eq0 + seasonal[:, None, None] * self.phi_eq1

    def tendency(self, s: torch.Tensor, seasonal: torch.Tensor, forcing: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        grid = self.isht(s)  # [B, 3, nlat, nlon]
        uv = self.uv(s[:, 1:])
        # one vector transform for both fluxes: (zeta + f) u and Phi u
        fluxes = self.vrtdiv(torch.stack((uv * (grid[:, 1:2] + self.coriolis), uv * grid[:, 0:1]), dim=1))
        flux = fluxes[:, 0]
        ke = 0.5 * (uv[:, 0] ** 2 + uv[:, 1] ** 2)
        dphi = -fluxes[:, 1, 1]
        dphi = dphi - self.not_mean * (s[:, 0] - self.phi_eq(seasonal)) / (cfg.tau_rad_days * 86400.0)
        dvrt = -flux[:, 1] - s[:, 1] / (cfg.tau_drag_days * 86400.0) + forcing
        ddiv = flux[:, 0] - self.lap * self.sht(grid[:, 0] + ke) - s[:, 2] / (cfg.tau_drag_days * 86400.0)
        return torch.stack((dphi, dvrt, ddiv), dim=1) * self.tril

    def balanced_initial_state(self, gen: torch.Generator, batch: int) -> torch.Tensor:
        """Random vorticity (spectrum peaked near l=6, rms ~ 2e-5 s-1), zero divergence, balanced Phi."""
        L, M = self.lap.shape
        l = torch.arange(L, dtype=torch.float64)[:, None]
        amp = torch.where(l > 0, l * torch.exp(-l / 6.0), 0.0) * self.tril
        noise = torch.randn(batch, L, M, dtype=torch.complex128, generator=gen)
        noise[..., 0] = noise[..., 0].real.to(noise.dtype) * math.sqrt(2)
        vrt = noise * amp
        ms = (vrt[..., 0].abs() ** 2).sum((-1,)) + 2 * (vrt[..., 1:].abs() ** 2).sum((-2, -1))
        vrt = vrt * (2e-5 * math.sqrt(4 * math.pi) / ms.sqrt())[:, None, None]
        vrtdiv = torch.stack((vrt, torch.zeros_like(vrt)), dim=1)
        uv = self.uv(vrtdiv)
        flux = self.vrtdiv(uv * (self.isht(vrt)[:, None] + self.coriolis))
        ke = 0.5 * (uv[:, 0] ** 2 + uv[:, 1] ** 2)
        # zero d(delta)/dt:  lap(Phi) = curl((zeta+f) u) - lap(ke)
        phi = self.invlap * flux[:, 0] - self.sht(ke) * self.not_mean
        phi[:, 0, 0] = GRAVITY * self.cfg.mean_depth * math.sqrt(4 * math.pi)
        return torch.stack((phi, vrt, torch.zeros_like(vrt)), dim=1) * self.tril

    def stationary_forcing(self, batch: int, gen: torch.Generator) -> torch.Tensor:
        r"""A draw ``[batch, L, M]`` from the stationary distribution of :meth:`forcing_step`'s AR(1) process.

        With :math:`f_{n+1} = \phi f_n + \sqrt{1-\phi^2}\,\sigma\xi_n`, the stationary law is that of
        :math:`\sigma\xi` (same band, same per-coefficient variance): rms forcing_amplitude over the sphere.
        """
        L, M = self.lap.shape
        xi = torch.randn(batch, L, M, dtype=torch.complex128, generator=gen)
        xi[..., 0] = xi[..., 0].real.to(xi.dtype) * math.sqrt(2)
        return self.forcing_sigma * xi * self.band

    def forcing_step(self, f: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """AR(1) update of the spectral vorticity forcing; stationary rms = forcing_amplitude."""
        phi = math.exp(-self.cfg.dt / (self.cfg.forcing_tau_days * 86400.0))
        xi = torch.randn(f.shape, dtype=torch.complex128, generator=gen)
        xi[..., 0] = xi[..., 0].real.to(xi.dtype) * math.sqrt(2)
        return phi * f + math.sqrt(1 - phi**2) * self.forcing_sigma * xi * self.band


def seasonal_factor(t: pd.Timestamp) -> float:
    """sin(2 pi (day_of_year - 80) / 365.25): +1 near the northern summer solstice."""
    doy = t.day_of_year + (t.hour + t.minute / 60) / 24.0
    return math.sin(2 * math.pi * (doy - 80.0) / 365.25)


class Integrator:
    r"""Semi-implicit AB3 / Crank-Nicolson stepping of :class:`BatchedShallowWater`.

    The linear gravity-wave terms :math:`\partial_t\delta \ni \lambda_l \Phi`,
    :math:`\partial_t\Phi \ni -\bar\Phi\,\delta` (:math:`\lambda_l = l(l+1)/R^2`,
    :math:`\bar\Phi = gH`) are treated with Crank-Nicolson, everything else with third-order Adams-Bashforth
    (the solver's scheme). Per degree :math:`l`, with :math:`a = \Delta t/2`:

    .. math::

        \Phi^{n+1} = \frac{B - a\bar\Phi A}{1 + a^2\lambda_l\bar\Phi},\qquad
        \delta^{n+1} = A + a\lambda_l\Phi^{n+1},

    with :math:`A = \delta^n + \Delta t N_\delta + a\lambda_l\Phi^n` and
    :math:`B = \Phi^n + \Delta t N_\Phi - a\bar\Phi\delta^n`. The step is then limited by advection,
    not by the gravity-wave speed: 2-4x larger steps than the fully explicit solver. The implicit solve does not
    touch :math:`l = 0`, so the mass :math:`\Phi_{00}` stays exactly conserved. Hyperdiffusion on
    :math:`\zeta, \delta` follows each step as in the solver.
    """

    def __init__(self, model: BatchedShallowWater, state: torch.Tensor, gen: torch.Generator) -> None:
        self.m, self.s, self.gen = model, state, gen
        self.forcing = torch.zeros_like(state[:, 1])
        self.hist: list[torch.Tensor] = []
        self.lam = -model.lap
        self.phibar = GRAVITY * model.cfg.mean_depth

    def next_forcing(self) -> torch.Tensor:
        """The forcing of the next step (the generator's AR(1) update; replays override it)."""
        return self.m.forcing_step(self.forcing, self.gen)

    def step(self, seasonal: torch.Tensor) -> None:
        """Advance by dt; ``seasonal`` [B] is each trajectory's seasonal factor (held over a sampling step)."""
        m, s, dt = self.m, self.s, self.m.cfg.dt
        self.forcing = self.next_forcing()
        d = m.tendency(s, seasonal, self.forcing)
        # explicit part: total tendency minus the linear gravity-wave terms
        d[:, 0] = d[:, 0] + self.phibar * s[:, 2]
        d[:, 2] = d[:, 2] - self.lam * s[:, 0]
        self.hist = [d, *self.hist[:2]]
        h = self.hist
        if len(h) == 1:
            n = h[0]
        elif len(h) == 2:
            n = 1.5 * h[0] - 0.5 * h[1]
        else:
            n = (23.0 / 12.0) * h[0] - (16.0 / 12.0) * h[1] + (5.0 / 12.0) * h[2]
        a = 0.5 * dt
        A = s[:, 2] + dt * n[:, 2] + a * self.lam * s[:, 0]
        B = s[:, 0] + dt * n[:, 0] - a * self.phibar * s[:, 2]
        phi = (B - a * self.phibar * A) / (1.0 + a * a * self.lam * self.phibar)
        div = A + a * self.lam * phi
        vrt = s[:, 1] + dt * n[:, 1]
        self.s = torch.stack((phi, vrt * m.hyperdiff, div * m.hyperdiff), dim=1)


def _output_sht_kw(cfg: SWEConfig) -> dict:
    """torch-harmonics settings of the transforms on the output grid (band limit: the model's truncation)."""
    g = Grid(cfg.grid, cfg.nlat, cfg.nlon)  # type: ignore[arg-type]
    return dict(lmax=cfg.truncation, mmax=cfg.truncation, grid=g.th_grid, csphase=False)


class OutputSynth:
    """Spectral state -> (z, u, v, vo) on the output grid (exact synthesis of the band-limited fields)."""

    def __init__(self, cfg: SWEConfig) -> None:
        import torch_harmonics as th

        kw = _output_sht_kw(cfg)
        self.isht = th.InverseRealSHT(cfg.nlat, cfg.nlon, **kw).double()
        self.ivsht = th.InverseRealVectorSHT(cfg.nlat, cfg.nlon, **kw).double()

    def __call__(self, model: BatchedShallowWater, s: torch.Tensor) -> np.ndarray:
        phi_vrt = self.isht(s[:, :2])
        uv = self.ivsht(model.invlap * s[:, 1:] / RADIUS)
        # [B, 4, nlat, nlon] in channel order z, u, v, vo
        return torch.cat((phi_vrt[:, :1], uv, phi_vrt[:, 1:2]), dim=1).numpy()


class StateAnalysis:
    r"""Output fields (z, u, v) -> spectral state ``[B, 3, L, M]`` (Phi, zeta, delta): the inverse of
    :class:`OutputSynth`.

    The stored fields are band-limited at T\ ``truncation`` and the output grid's quadrature is exact for products
    of two such harmonics (Clenshaw-Curtis with ``nlat >= 2T``, or Gauss), so :math:`\Phi_{lm}` and, from the
    vector transform of (u, v), :math:`(\zeta, \delta)_{lm} = -l(l+1)/R\,(\cdot)` are recovered to the
    rounding of the stored float32 values.
    """

    def __init__(self, cfg: SWEConfig) -> None:
        import torch_harmonics as th

        kw = _output_sht_kw(cfg)
        self.sht = th.RealSHT(cfg.nlat, cfg.nlon, **kw).double()
        self.vsht = th.RealVectorSHT(cfg.nlat, cfg.nlon, **kw).double()

    def __call__(self, model: BatchedShallowWater, zuv: torch.Tensor) -> torch.Tensor:
        """``zuv [B, 3, nlat, nlon]`` float64 (z, u, v on the output grid) -> state ``[B, 3, L, M]``."""
        phi = self.sht(zuv[:, 0])
        vrtdiv = model.lap * RADIUS * self.vsht(zuv[:, 1:3])
        return torch.cat((phi[:, None], vrtdiv), dim=1) * model.tril


def config_from_attrs(attrs: dict) -> SWEConfig | None:
    """The generator settings a store written by ``sciml data synth`` records (``swe_config``), or ``None``.

    The attribute is the settings' ``repr``; it is parsed as literals only (never evaluated). A store whose
    attribute names settings this version does not know raises :class:`UsageError`.
    """
    import ast

    text = attrs.get("swe_config")
    if not text:
        return None
    try:
        call = ast.parse(str(text), mode="eval").body
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "SWEConfig"):
            raise ValueError("not a SWEConfig(...) call")
        kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg}
        return SWEConfig(**kwargs)
    except (SyntaxError, ValueError, TypeError) as exc:
        raise UsageError(
            f"the store's swe_config attribute ({str(text)[:60]}...) cannot be read as generator settings ({exc}); "
            "rebuild the store with `sciml data synth`"
        ) from None


def group_members(cfg: SWEConfig) -> list[list[int]]:
    """Trajectory indices of each batch group (balanced, first groups larger)."""
    base, extra = divmod(cfg.trajectories, cfg.groups)
    out, k = [], 0
    for g in range(cfg.groups):
        n = base + (1 if g < extra else 0)
        out.append(list(range(k, k + n)))
        k += n
    return out


def _group_seed(seed: int, group: int) -> int:
    return int(np.random.SeedSequence([seed, group]).generate_state(1, dtype=np.uint64)[0] >> 1)


_TICKS = None  # progress queue of a worker process (set by _init_worker; never used in the parent)


def _init_worker(queue) -> None:
    global _TICKS
    _TICKS = queue


def _simulate_group(cfg: SWEConfig, group: int, members: list[int], tick=None) -> tuple[np.ndarray, np.ndarray]:
    """One batch of trajectories: ``out [b, nper, 4, nlat, nlon]`` float32 and ``mass [b, nper]``.

    Depends only on (cfg, group, members): the same bits whether it runs in this process or a worker.
    """
    if tick is None and _TICKS is not None:
        tick = _TICKS.put
    nper = cfg.samples_per_trajectory
    start = pd.Timestamp(cfg.start)
    step = pd.Timedelta(hours=cfg.step_hours)
    substeps = int(round(cfg.step_hours * 3600 / cfg.dt))
    spin = int(round(cfg.spinup_days * 24 / cfg.step_hours))
    b = len(members)
    out = np.empty((b, nper, 4, cfg.nlat, cfg.nlon), dtype=np.float32)
    mass = np.empty((b, nper))
    with torch_threads(1), torch.no_grad():
        gen = torch.Generator().manual_seed(_group_seed(cfg.seed, group))
        model = BatchedShallowWater(cfg)
        synth = OutputSynth(cfg)
        integ = Integrator(model, model.balanced_initial_state(gen, b), gen)
        # trajectory k covers [start + k*nper*step, ...) and feels the seasons of its own dates
        offsets = [k * nper * step for k in members]
        t = start - spin * step
        for i in range(-spin, nper):
            if i >= 0:
                out[:, i] = synth(model, integ.s)
                mass[:, i] = integ.s[:, 0, 0, 0].real.numpy()
            # the seasonal factor (range +-1) moves by < 0.005 in 6 h: evaluate it once per sample, mid-interval
            mid = t + step / 2
            seasonal = torch.tensor([seasonal_factor(mid + o) for o in offsets], dtype=torch.float64)
            for _ in range(substeps):
                integ.step(seasonal)
            t = t + step
            if tick is not None:
                tick(b)
        if not torch.isfinite(integ.s).all():
            raise UsageError(
                "the shallow-water run became unstable (NaN/inf): use a smaller --dt or a lower --truncation"
            )
    return out, mass


def _run_groups(cfg: SWEConfig, groups: list[list[int]], workers: int, progress: Progress) -> list:
    if workers <= 1:
        return [_simulate_group(cfg, g, m, tick=lambda n: progress.update(n)) for g, m in enumerate(groups)]
    import multiprocessing as mp
    import queue as queue_mod
    from concurrent.futures import ProcessPoolExecutor

    # spawn, not fork: a forked torch process can deadlock in OpenMP; the workers re-import (a few seconds)
    ctx = mp.get_context("spawn")
    ticks = ctx.Queue()
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(ticks,)) as pool:
        futures = [pool.submit(_simulate_group, cfg, g, m) for g, m in enumerate(groups)]
        while not all(f.done() for f in futures):
            try:
                progress.update(ticks.get(timeout=0.5))
            except queue_mod.Empty:
                pass
        results = [f.result() for f in futures]
    while True:
        try:
            progress.update(ticks.get_nowait())
        except queue_mod.Empty:
            break
    return results


def simulate(cfg: SWEConfig, progress: Progress | None = None, workers: int = 1) -> tuple[xr.Dataset, np.ndarray]:
    """Run the generator; return the canonical dataset and the conserved mass ``Phi_00(t)`` per trajectory.

    Parameters
    ----------
    cfg
        Generator settings. Trajectories are advanced in ``cfg.groups`` batches, each with its own random stream
        (seeded from ``(seed, group)``).
    progress
        Progress reporter (samples, spin-up included, summed over trajectories).
    workers
        Processes that run the batches (at most ``cfg.groups``); the store is bitwise the same for any value.

    Returns
    -------
    ds
        Canonical dataset (time, lat, lon), float32 channels z500, u500, v500, vo500, coordinate ``segment``.
    mass
        ``[trajectories, samples]`` float64 spectral coefficient :math:`\\Phi_{00}` of each stored sample
        (:math:`\\int \\Phi\\, d\\Omega = \\sqrt{4\\pi}\\,\\Phi_{00}`); constant to round-off if mass is
        conserved.
    """
    progress = progress or NoProgress()
    nper = cfg.samples_per_trajectory
    if nper < 1:
        raise UsageError(f"--days {cfg.days} gives no {cfg.step_hours}-hourly sample")
    if workers < 1:
        raise UsageError(f"--workers must be >= 1, got {workers}")
    B = cfg.trajectories
    spin = int(round(cfg.spinup_days * 24 / cfg.step_hours))
    groups = group_members(cfg)
    progress.start(B * (spin + nper), f"shallow water {B}x{cfg.days:g} d at {cfg.nlat}x{cfg.nlon}")
    try:
        results = _run_groups(cfg, groups, min(workers, len(groups)), progress)
    finally:
        progress.close()
    out = np.concatenate([r[0] for r in results])
    mass = np.concatenate([r[1] for r in results])
    start = pd.Timestamp(cfg.start)
    step = pd.Timedelta(hours=cfg.step_hours)
    times = pd.DatetimeIndex([start + k * nper * step + i * step for k in range(B) for i in range(nper)])
    data = out.reshape(B * nper, 4, cfg.nlat, cfg.nlon)
    g = Grid(cfg.grid, cfg.nlat, cfg.nlon)  # type: ignore[arg-type]
    names = [f"z{LEVEL}", f"u{LEVEL}", f"v{LEVEL}", f"vo{LEVEL}"]
    ds = xr.Dataset(
        {n: (("time", "lat", "lon"), data[:, c]) for c, n in enumerate(names)},
        coords={
            "time": times,
            "lat": g.lat,
            "lon": g.lon,
            "segment": ("time", np.repeat(np.arange(B, dtype=np.int32), nper)),
        },
    )
    ds.attrs.update(
        source="sciml shallow-water generator (forced SWE on the rotating sphere, torch-harmonics)",
        swe_config=repr(cfg),
    )
    return finalize_canonical(ds, where="shallow-water generator"), mass
