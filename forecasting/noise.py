r"""Spherical AR(1) diffusion noise: the latent input :math:`z_n` of the FCN3-style model.

Each noise channel is an isotropic Gaussian field with a heat-kernel spectrum, evolved in time by an AR(1)
(Ornstein-Uhlenbeck) process in spherical-harmonic space:

.. math::

    \eta_{n+1,lm} = \varphi\,\eta_{n,lm} + \sqrt{1-\varphi^2}\,\sqrt{C_l}\,\xi_{n,lm}, \qquad
    \varphi = e^{-\lambda},\; \lambda = \Delta t/\tau,

    C_l = \frac{4\pi\sigma^2\, e^{-k_T\, l(l+1)}}{\sum_{l'=l_0}^{L-1} (2l'+1)\, e^{-k_T\, l'(l'+1)}}
    \quad (l \ge l_0), \qquad C_l = 0 \quad (l < l_0),

with :math:`\xi_{lm}` standard complex normal (:math:`E|\xi|^2 = 1`) for :math:`m>0` and standard real normal
for :math:`m=0`. :math:`C_l = E|\eta_{lm}|^2` is the stationary coefficient variance, so with orthonormal
harmonics the pointwise variance is :math:`\sum_l \frac{2l+1}{4\pi} C_l = \sigma^2` exactly. The diffusion
parameter is :math:`k_T = \tfrac12 (L/R)^2` for a length scale :math:`L` on a sphere of radius :math:`R`; FCN3
uses eight octaves, 50 km to 6400 km. The lowest degree :math:`l_0` is 1 in FCN3; :math:`l_0 = 2` leaves out
degree 1 (solid-body rotations and the planetary wave one), which a shallow-water flow conserves once kicked, so
noise there makes members random-walk. The grid field is the inverse (orthonormal) SHT of :math:`\eta`.

:class:`EnsembleNoise` gives every ensemble member its own random stream (seeded by the member's global index)
and, with ``centered=True``, makes members ``2k`` and ``2k+1`` exact opposites (antithetic pairs).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch
import torch.nn as nn
import torch_harmonics as th

from sciml.errors import UsageError
from sciml.forecasting.sphere import check_grid, exact_lmax

EARTH_RADIUS_KM = 6370.0
#: FCN3's eight length scales (km), octaves from 50 to 6400 km.
FCN3_LENGTH_SCALES_KM: tuple[float, ...] = (50.0, 100.0, 200.0, 400.0, 800.0, 1600.0, 3200.0, 6400.0)


def heat_kernel_kT(length_km: float, radius_km: float = EARTH_RADIUS_KM) -> float:
    r"""Diffusion time of the heat kernel with length scale ``length_km``: :math:`k_T = \tfrac12 (L/R)^2`."""
    if length_km <= 0 or radius_km <= 0:
        raise UsageError(f"length scale and radius must be positive, got {length_km} km, {radius_km} km")
    return 0.5 * (length_km / radius_km) ** 2


def heat_kernel_spectrum(kT: float, lmax: int, sigma: float = 1.0, l_min: int = 1) -> torch.Tensor:
    r"""Stationary coefficient variances :math:`C_l`, ``l = 0..lmax-1`` (float64), zero below ``l_min``; see the
    module docstring."""
    if not 1 <= l_min < lmax:
        raise UsageError(f"need 1 <= l_min < lmax for a zero-mean field, got l_min={l_min}, lmax={lmax}")
    l = torch.arange(lmax, dtype=torch.float64)
    decay = torch.exp(-kT * l * (l + 1))
    decay[:l_min] = 0.0
    return 4.0 * math.pi * sigma**2 * decay / ((2 * l + 1) * decay).sum()


class DiffusionNoiseS2(nn.Module):
    """AR(1) heat-kernel noise with one channel per length scale.

    Parameters
    ----------
    nlat, nlon : int
        Grid of the noise fields (the model's I/O grid).
    kT : sequence of float
        Diffusion times, one per channel (see :func:`heat_kernel_kT`).
    sigma : float
        Pointwise standard deviation of every channel.
    lam : float
        :math:`\\lambda = \\Delta t/\\tau`; the AR coefficient is :math:`\\varphi = e^{-\\lambda}` (FCN3: 1).
    lmax : int, optional
        Number of degrees; default: the exactly resolved band of the grid (:func:`exact_lmax`). Orders are
        truncated triangularly (``m <= l``).
    grid : str
        ``equiangular`` or ``legendre-gauss``.
    l_min : int
        Lowest degree with noise (FCN3: 1); the pointwise variance stays ``sigma**2``.
    """

    # buffers (registered in __init__), declared for type checkers
    spectrum: torch.Tensor
    std: torch.Tensor

    def __init__(
        self,
        nlat: int,
        nlon: int,
        kT: Sequence[float],
        sigma: float = 1.0,
        lam: float = 1.0,
        lmax: int | None = None,
        grid: str = "equiangular",
        l_min: int = 1,
    ) -> None:
        super().__init__()
        check_grid(grid)
        if len(kT) == 0:
            raise UsageError("DiffusionNoiseS2 needs at least one kT (length scale)")
        if any(k < 0 for k in kT):
            raise UsageError(f"kT must be >= 0, got {list(kT)}")
        if sigma <= 0 or lam <= 0:
            raise UsageError(f"sigma and lam must be > 0, got sigma={sigma}, lam={lam}")
        lmax = exact_lmax(nlat, grid) if lmax is None else lmax
        if not 2 <= lmax <= nlon // 2:
            raise UsageError(f"lmax={lmax} must be in [2, nlon/2={nlon // 2}] (the grid cannot carry higher orders)")
        self.nlat, self.nlon, self.lmax, self.n_channels = nlat, nlon, lmax, len(kT)
        self.kT, self.sigma, self.lam, self.l_min = tuple(float(k) for k in kT), float(sigma), float(lam), l_min
        self.phi = math.exp(-lam)
        self.isht = th.InverseRealSHT(nlat, nlon, lmax=lmax, mmax=lmax, grid=grid, norm="ortho")
        spectra = torch.stack([heat_kernel_spectrum(k, lmax, sigma, l_min) for k in self.kT])  # [C, L]
        self.register_buffer("spectrum", spectra, persistent=False)
        tril = torch.tril(torch.ones(lmax, lmax, dtype=torch.float64))
        std = spectra.sqrt()[:, :, None] * tril  # [C, L, M], zero above the diagonal m > l
        self.register_buffer("std", std.float(), persistent=False)

    def _innovation(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        shape = (batch, self.n_channels, self.lmax, self.lmax)
        xi = torch.randn(shape, generator=generator, dtype=torch.complex64, device=generator.device)
        # the m = 0 coefficient of a real field is real: unit variance from the real part alone
        xi[..., 0] = math.sqrt(2.0) * xi[..., 0].real
        return xi.to(self.std.device) * self.std

    def sample_stationary(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        """A draw from the stationary distribution, complex ``[batch, C, lmax, lmax]``."""
        return self._innovation(batch, generator)

    def step(self, state: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        r"""One AR(1) update :math:`\eta \mapsto \varphi\eta + \sqrt{1-\varphi^2}\sqrt{C_l}\,\xi`."""
        if state.shape[1:] != (self.n_channels, self.lmax, self.lmax):
            raise UsageError(f"noise state has shape {tuple(state.shape)}, expected [B, {self.n_channels}, L, L]")
        return self.phi * state + math.sqrt(1.0 - self.phi**2) * self._innovation(state.shape[0], generator)

    def to_grid(self, state: torch.Tensor) -> torch.Tensor:
        """Spectral state ``[..., C, L, L]`` -> grid fields ``[..., C, nlat, nlon]`` (float32)."""
        return self.isht(state)


def member_seed(seed: int, key: int) -> int:
    """A well-mixed 63-bit seed for stream ``key`` of base ``seed`` (numpy SeedSequence)."""
    return int(np.random.SeedSequence([seed, key]).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


class NoiseStreams(Protocol):
    """What the training and inference loops ask of an ensemble's noise.

    Implemented by :class:`EnsembleNoise` (one process) and
    :class:`sciml.forecasting.distributed.noise.TiledEnsembleNoise` (a rank's members, rows and tile of the same
    streams); the loops never know which one they hold.
    """

    member_indices: list[int]

    @property
    def generators(self) -> list[torch.Generator]:
        """Generators whose states a checkpoint stores."""
        ...

    def initial(self, batch: int) -> torch.Tensor:
        """Stationary spectral state for ``batch`` samples."""
        ...

    def step(self, state: torch.Tensor) -> torch.Tensor:
        """AR(1) update of the spectral state."""
        ...

    def to_grid(self, state: torch.Tensor) -> torch.Tensor:
        """Grid fields ``[E_local, B_local, C, H, W]`` of the members and rows held here."""
        ...


class EnsembleNoise:
    """Noise streams for an ensemble: per-member generators and the antithetic (centred) option.

    Parameters
    ----------
    noise : DiffusionNoiseS2
        The noise process.
    members : int
        Global ensemble size ``E``.
    seed : int
        Base seed; member ``e`` draws from stream ``e`` (``e // 2`` when centred).
    centered : bool
        Antithetic pairs: members ``2k`` and ``2k+1`` share a stream and the odd one is negated, so each pair
        sums to zero exactly and the ensemble mean of the noise is zero. Needs an even ``E``.
    member_indices : sequence of int, optional
        Global indices of the members held here (ensemble parallelism); all by default. A member's noise depends
        only on its global index, never on how members are spread over processes.
    """

    def __init__(
        self,
        noise: DiffusionNoiseS2,
        members: int,
        seed: int,
        centered: bool = False,
        member_indices: Sequence[int] | None = None,
    ) -> None:
        if members < 1:
            raise UsageError(f"ensemble size must be >= 1, got {members}")
        if centered and members % 2:
            raise UsageError(f"centred (antithetic) noise needs an even ensemble size, got {members}")
        idx = list(range(members)) if member_indices is None else list(member_indices)
        if not idx or any(not 0 <= e < members for e in idx):
            raise UsageError(f"member_indices {idx} must be non-empty and within 0..{members - 1}")
        self.noise, self.members, self.seed, self.centered, self.member_indices = noise, members, seed, centered, idx
        self.generators = [torch.Generator().manual_seed(member_seed(seed, e // 2 if centered else e)) for e in idx]
        self.signs = [(-1.0 if centered and e % 2 else 1.0) for e in idx]

    def initial(self, batch: int) -> torch.Tensor:
        """Stationary draws for every local member, ``[E_local, B, C, L, L]``."""
        return torch.stack(
            [s * self.noise.sample_stationary(batch, g) for g, s in zip(self.generators, self.signs, strict=True)]
        )

    def step(self, state: torch.Tensor) -> torch.Tensor:
        """AR(1) update of every member (antithetic partners get opposite innovations)."""
        return torch.stack(
            [s * self.noise.step(s * st, g) for st, g, s in zip(state, self.generators, self.signs, strict=True)]
        )

    def to_grid(self, state: torch.Tensor) -> torch.Tensor:
        """``[E_local, B, C, L, L]`` -> ``[E_local, B, C, nlat, nlon]``."""
        return self.noise.to_grid(state)


def fcn3_noise(nlat: int, nlon: int, grid: str = "equiangular", lmax: int | None = None) -> DiffusionNoiseS2:
    """FCN3's noise: 8 channels, sigma 1, length scales 50..6400 km, lambda = 1."""
    return DiffusionNoiseS2(nlat, nlon, [heat_kernel_kT(s) for s in FCN3_LENGTH_SCALES_KM], lmax=lmax, grid=grid)
