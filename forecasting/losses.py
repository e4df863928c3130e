r"""Ensemble CRPS losses on the sphere: grid (quadrature-weighted) and spectral CRPS, channel weights, rollouts.

For an ensemble :math:`x_1..x_N` and observation :math:`y` the kernels share one sort-based form
(:math:`O(N \log N)`; :math:`x_{(i)}` sorted ascending):

.. math::

    \mathrm{CRPS}_\alpha = \frac1N \sum_e |x_e - y| - \frac{N - 1 + \alpha}{N^2 (N-1)}
    \sum_{i=1}^{N} (2i - N - 1)\, x_{(i)},

using :math:`\sum_{i,j}|x_i - x_j| = 2\sum_i (2i-N-1)x_{(i)}`. :math:`\alpha = 0` is the standard
(empirical-CDF) CRPS with spread coefficient :math:`1/(2N^2)`, :math:`\alpha = 1` the fair (unbiased) CRPS with
:math:`1/(2N(N-1))`, and :math:`0<\alpha<1` the almost-fair CRPS
:math:`\alpha\,\mathrm{fCRPS} + (1-\alpha)\,\mathrm{CRPS}` (AIFS uses 0.95).

**Antithetic ensembles.** The spread term estimates :math:`\tfrac12 E|X - X'|` for *independent* members. With
antithetic noise (members :math:`2k, 2k+1` driven by opposite noise) a partner pair is anti-correlated, so its
:math:`|x_{2k} - x_{2k+1}|` overstates the spread: for a response linear in the noise,
:math:`x_{2k,2k+1} = \mu \pm d`, a two-member fair CRPS is :math:`\max(|\mu - y| - |d|, 0)`, flat for every
:math:`|d| \ge |\mu - y|` — it never penalises too much spread. ``antithetic=True`` leaves partner pairs out:

.. math::

    \hat D = \frac{\sum_{i,j}|x_i - x_j| - 2\sum_k |x_{2k} - x_{2k+1}|}{N(N-2)},\qquad
    \mathrm{CRPS}_\alpha = \frac1N \sum_e |x_e - y| - \frac{N - 1 + \alpha}{2N}\,\hat D,

(:math:`\hat D` is unbiased for :math:`E|X-X'|` when different pairs are independent; with independent members
the same formula with all :math:`N(N-1)` pairs is the one above), so it needs :math:`N \ge 4`, even.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from sciml.errors import UsageError
from sciml.forecasting.sphere import (
    ChannelSHT,
    band_limit,
    check_grid,
    quadrature_weights,
)


@dataclass(frozen=True)
class CRPSKernel:
    """CRPS estimator with fairness parameter ``alpha`` in [0, 1] (0 standard, 1 fair).

    ``antithetic=True``: members ``2k, 2k+1`` are antithetic partners and their pair is left out of the spread
    term (module docstring); needs an even ensemble of at least 4.
    """

    alpha: float = 0.0
    antithetic: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise UsageError(f"CRPS alpha must lie in [0, 1], got {self.alpha}")

    def check_antithetic(self, n: int) -> None:
        """Raise unless ``n`` members can hold antithetic pairs and still give an independent pair."""
        if n < 4 or n % 2:
            raise UsageError(
                f"the antithetic CRPS needs an even ensemble of at least 4 members, got {n}: with 2 members the "
                "only pair is antithetic and no independent pair is left to estimate the spread; use 4+ members "
                "or independent (non-antithetic) noise"
            )

    @property
    def name(self) -> str:
        return {0.0: "standard", 1.0: "fair"}.get(self.alpha, f"almost-fair({self.alpha:g})")

    def spread_coefficient(self, n: int) -> float:
        r"""Factor :math:`(N-1+\alpha)/(N^2(N-1))` in front of :math:`\sum_i (2i-N-1)x_{(i)}`."""
        if n < 1:
            raise UsageError("the ensemble is empty")
        if n == 1:
            if self.alpha > 0:
                raise UsageError(
                    f"the {self.name} CRPS needs at least 2 ensemble members (it divides by N-1); "
                    "use StandardCRPS() for a single member or enlarge the ensemble"
                )
            return 0.0
        return (n - 1 + self.alpha) / (n * n * (n - 1))


@dataclass(frozen=True)
class StandardCRPS(CRPSKernel):
    """Standard (empirical-CDF) CRPS, equal to ``properscoring.crps_ensemble``."""

    alpha: float = field(default=0.0, init=False)


@dataclass(frozen=True)
class FairCRPS(CRPSKernel):
    """Fair CRPS (unbiased for the infinite-ensemble score), ``scoringrules`` ``estimator='fair'``."""

    alpha: float = field(default=1.0, init=False)


@dataclass(frozen=True)
class AlmostFairCRPS(CRPSKernel):
    """Almost-fair CRPS ``alpha * fair + (1 - alpha) * standard`` (AIFS: alpha = 0.95)."""

    alpha: float = 0.95


def crps_ensemble(
    forecast: torch.Tensor, observation: torch.Tensor, kernel: CRPSKernel, ensemble_dim: int = 0
) -> torch.Tensor:
    """Pointwise ensemble CRPS; ``forecast`` has the members along ``ensemble_dim``, ``observation`` lacks it.

    With ``kernel.antithetic`` the members must be in their global order (partners ``2k, 2k+1`` adjacent).
    """
    fc = forecast.movedim(ensemble_dim, 0)
    if fc.shape[1:] != observation.shape:
        raise UsageError(
            f"forecast {tuple(forecast.shape)} (members on dim {ensemble_dim}) and observation "
            f"{tuple(observation.shape)} do not match"
        )
    n = fc.shape[0]
    if kernel.antithetic:
        kernel.check_antithetic(n)
    coef = kernel.spread_coefficient(n)
    skill = (fc - observation.unsqueeze(0)).abs().mean(dim=0)
    if coef == 0.0 and not kernel.antithetic:
        return skill
    x_sorted, _ = torch.sort(fc, dim=0)
    rank_w = (2 * torch.arange(1, n + 1, device=fc.device, dtype=fc.dtype) - n - 1).reshape(-1, *[1] * observation.ndim)
    if not kernel.antithetic:
        return skill - coef * (rank_w * x_sorted).sum(dim=0)
    all_pairs = 2 * (rank_w * x_sorted).sum(dim=0)  # sum over ordered pairs i, j of |x_i - x_j|
    partners = (fc[0::2] - fc[1::2]).abs().sum(dim=0)
    mean_gap = (all_pairs - 2 * partners) / (n * (n - 2))
    return skill - (n - 1 + kernel.alpha) / (2 * n) * mean_gap


def _check_weights(weights: torch.Tensor | Sequence[float] | None, n_channels: int | None) -> torch.Tensor | None:
    if weights is None:
        return None
    w = torch.as_tensor(weights, dtype=torch.float64).flatten()
    if (w < 0).any() or not torch.isfinite(w).all() or w.sum() <= 0:
        raise UsageError("channel weights must be finite, non-negative and not all zero")
    if n_channels is not None and w.numel() != n_channels:
        raise UsageError(f"{w.numel()} channel weights for {n_channels} channels")
    return w


class GridCRPSLoss(nn.Module):
    r"""Quadrature-weighted ensemble CRPS on the grid.

    .. math::

        L = \frac1B \sum_b \sum_c w_c \sum_{x} q_x\, \mathrm{CRPS}_\alpha(\{u^e_{bc}(x)\}_e, u^*_{bc}(x)),

    with :math:`\sum_x q_x = 1` (spherical mean) and channel weights :math:`w_c` (uniform :math:`1/C` by
    default). Forecasts are ``[E, B, C, H, W]``, targets ``[B, C, H, W]``.
    """

    # buffers (registered in __init__), declared for type checkers
    quad: torch.Tensor
    channel_weights: torch.Tensor | None

    def __init__(
        self,
        nlat: int,
        nlon: int,
        kernel: CRPSKernel,
        grid: str = "equiangular",
        channel_weights: torch.Tensor | Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        self.kernel = kernel
        self.register_buffer("quad", quadrature_weights(nlat, nlon, check_grid(grid)).float(), persistent=False)
        w = _check_weights(channel_weights, None)
        self.register_buffer("channel_weights", None if w is None else w.float(), persistent=False)

    def per_channel(self, forecast: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Batch-mean spherical-mean CRPS per channel, ``[C]``."""
        if forecast.ndim != 5:
            raise UsageError(f"forecast must be [E, B, C, H, W], got shape {tuple(forecast.shape)}")
        crps = crps_ensemble(forecast, target, self.kernel, ensemble_dim=0)
        return (crps * self.quad.to(crps.dtype)).sum(dim=(-2, -1)).mean(dim=0)

    def forward(self, forecast: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return _weighted_sum(self.per_channel(forecast, target), self.channel_weights)


def _weighted_sum(per_channel: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    if weights is None:
        return per_channel.mean()
    if weights.numel() != per_channel.numel():
        raise UsageError(f"{weights.numel()} channel weights for {per_channel.numel()} channels")
    return (per_channel * weights.to(per_channel.dtype)).sum()


def spectral_setup(
    nlat: int, nlon: int, grid: str, lmax: int | None, coefficient_scale: float, vector: bool = False
) -> tuple[int, float]:
    """Validated ``(lmax, coefficient_scale)`` of a spectral CRPS (shared by the serial and distributed losses);
    ``lmax`` as in :func:`~sciml.forecasting.sphere.band_limit`."""
    if not coefficient_scale > 0:
        raise UsageError(f"coefficient_scale must be > 0, got {coefficient_scale}")
    return band_limit(nlat, nlon, grid, lmax, vector), float(coefficient_scale)


def mode_weights(lmax: int) -> torch.Tensor:
    """:math:`c_m` on the triangular ``[l, m]`` grid: 1 for m = 0, 2 for m > 0 (the ±m pair of a real field)."""
    cm = torch.full((lmax, lmax), 2.0)
    cm[:, 0] = 1.0
    return torch.tril(cm)


def mode_amplitudes(
    fields: torch.Tensor,
    grid: str = "equiangular",
    lmax: int | None = None,
    vector_pairs: Sequence[Sequence[int]] = (),
) -> torch.Tensor:
    r"""Typical magnitude of every coefficient of sample fields ``[N, C, H, W]`` -> ``[C, L, M]`` (0 for m > l).

    .. math:: a_{c,lm} = \Big(\frac1N \sum_n |f^{(n)}_{c,lm}|^2\Big)^{1/2}

    with the orthonormal coefficients of :class:`ChannelSHT` (wind pairs as spheroidal/toroidal).
    """
    if fields.ndim != 4:
        raise UsageError(f"fields must be [N, C, H, W], got shape {tuple(fields.shape)}")
    nlat, nlon = fields.shape[-2:]
    transform = ChannelSHT.serial(nlat, nlon, grid, lmax, vector_pairs, fields.dtype)
    coeffs = transform(fields)
    lmax = coeffs.shape[-1]
    return (coeffs.abs() ** 2).mean(dim=0).sqrt() * torch.tril(torch.ones(lmax, lmax, dtype=fields.dtype))


def _channel_top(amplitudes: torch.Tensor, floor: float, kind: str) -> torch.Tensor:
    """Largest amplitude of each channel ``[C]``, after checking the amplitudes and the whitening floor."""
    if not torch.isfinite(amplitudes).all() or (amplitudes < 0).any():
        raise UsageError(f"{kind} amplitudes must be finite and non-negative")
    if not 0 < floor <= 1:
        raise UsageError(f"floor must be in (0, 1], got {floor}")
    top = amplitudes.flatten(1).max(dim=-1).values
    if (top <= 0).any():
        raise UsageError("a channel has no spectral power at any degree (a constant-zero field cannot be weighted)")
    return top


def whitening_mode_weights(amplitudes: torch.Tensor, floor: float = 1e-2) -> torch.Tensor:
    r"""Per-coefficient weights :math:`d_{c,lm}` that give every degree of every channel the same say.

    Each coefficient's CRPS is scored in units of its typical magnitude :math:`a_{c,lm}` (:func:`mode_amplitudes`;
    the CRPS is 1-homogeneous) and the :math:`2l+1` coefficients of a degree share one unit, with one constant for
    all channels (``C`` channels, ``L`` degrees):

    .. math::

        d_{c,lm} = \frac{K}{L\,(2l+1)\,\max(a_{c,lm},\, \epsilon \max_{l'm'} a_{c,l'm'})},\qquad
        K = \frac1C \sum_{c,l,m} c_m\, a_{c,lm},

    so that :math:`\sum_m c_m d_{c,lm} a_{c,lm} = K/L` for every :math:`(c, l)` above the floor and the total equals
    the unweighted typical spectral CRPS. Unlike :func:`whitening_degree_weights`, a coefficient that is small in
    the truth (a tilted solid-body rotation next to the zonal jet of the same degree, the large-scale divergence
    of a balanced flow) is scored in its own units, not those of the largest coefficient of its degree.
    ``floor`` :math:`\epsilon` keeps (almost) empty coefficients from dominating.
    """
    if amplitudes.ndim != 3 or amplitudes.shape[-1] != amplitudes.shape[-2]:
        raise UsageError(f"amplitudes must be [C, L, L], got shape {tuple(amplitudes.shape)}")
    top = _channel_top(amplitudes, floor, "mode")[:, None, None]
    lmax = amplitudes.shape[-1]
    cm = mode_weights(lmax).to(amplitudes.dtype)
    k = (cm * amplitudes).sum() / amplitudes.shape[0]
    degrees = 2 * torch.arange(lmax, dtype=amplitudes.dtype)[:, None] + 1
    w = k / (lmax * degrees * torch.maximum(amplitudes, floor * top))
    return w * (cm > 0)


def degree_amplitudes(
    fields: torch.Tensor,
    grid: str = "equiangular",
    lmax: int | None = None,
    vector_pairs: Sequence[Sequence[int]] = (),
) -> torch.Tensor:
    r"""Typical coefficient magnitude per channel and degree of sample fields ``[N, C, H, W]`` -> ``[C, L]``.

    .. math::

        a_{c,l} = \Big(\frac{1}{N}\sum_n \frac{P_{n,c}(l)}{2l+1}\Big)^{1/2}
                = \Big(\frac{\sum_m c_m\, a_{c,lm}^2}{2l+1}\Big)^{1/2},

    the root-mean-square orthonormal coefficient :math:`|f_{lm}|` of degree :math:`l` (:math:`P` is the angular power
    spectrum, :func:`sciml.forecasting.eval.spectra.power_spectrum_tensor`; :math:`a_{c,lm}` from
    :func:`mode_amplitudes`, wind pairs as spheroidal/toroidal coefficients).
    """
    modes = mode_amplitudes(fields, grid, lmax, vector_pairs)
    degrees = 2 * torch.arange(modes.shape[-1], dtype=modes.dtype) + 1
    return ((mode_weights(modes.shape[-1]).to(modes.dtype) * modes**2).sum(dim=-1) / degrees).sqrt()


def whitening_degree_weights(amplitudes: torch.Tensor, floor: float = 1e-2) -> torch.Tensor:
    r"""Per-channel degree weights :math:`w_{c,l}` that give every degree the same say in a spectral CRPS.

    The CRPS is 1-homogeneous (:math:`\mathrm{CRPS}(s X, s y) = s\,\mathrm{CRPS}(X, y)`), so weighting degree
    :math:`l` by :math:`1/a_{c,l}` scores its magnitudes in units of their typical size :math:`a_{c,l}`
    (:func:`degree_amplitudes`), and the further :math:`1/(2l+1)` shares one unit of weight among the
    :math:`2l+1` coefficients of the degree. The constant keeps the total spectral weight of a field with the
    typical magnitudes (``L`` degrees):

    .. math::

        w_{c,l} = \frac{\sum_{l'} (2l'+1)\, a_{c,l'}}{L\,(2l+1)\,\max(a_{c,l},\, \epsilon \max_{l'} a_{c,l'})},

    and :math:`\epsilon` = ``floor`` keeps degrees with (almost) no power, such as the global mean of a conserved
    field, from dominating. On steep spectra (geopotential) the plain spectral CRPS is decided by a few large-scale
    coefficients; these weights make it constrain the small-scale amplitude of the members too.
    """
    if amplitudes.ndim != 2:
        raise UsageError(f"amplitudes must be [C, L], got shape {tuple(amplitudes.shape)}")
    top = _channel_top(amplitudes, floor, "degree")[:, None]
    a = torch.maximum(amplitudes, floor * top)
    modes = 2 * torch.arange(amplitudes.shape[-1], dtype=amplitudes.dtype) + 1
    total = (modes * amplitudes).sum(dim=-1, keepdim=True)
    return total / (amplitudes.shape[-1] * modes * a)


def check_degree_weights(weights: torch.Tensor | None, lmax: int) -> torch.Tensor | None:
    """Validated weights ``[C, lmax]``, ``[lmax]`` or per mode ``[C, lmax, lmax]`` as float32 (``None``: none)."""
    if weights is None:
        return None
    w = torch.as_tensor(weights, dtype=torch.float32)
    per_mode = w.ndim == 3 and tuple(w.shape[-2:]) == (lmax, lmax)
    if not per_mode and (w.ndim not in (1, 2) or w.shape[-1] != lmax):
        raise UsageError(
            f"degree_weights must have shape [C, {lmax}], [{lmax}] or [C, {lmax}, {lmax}], got {tuple(w.shape)}"
        )
    if not torch.isfinite(w).all() or (w < 0).any():
        raise UsageError("degree_weights must be finite and non-negative")
    return w.clone()


def weighted_modes(modes: torch.Tensor, degree_weights: torch.Tensor | None) -> torch.Tensor:
    """``c_m`` ``[L, M]`` times the weights ``[C, L]`` / ``[L]`` / ``[C, L, M]`` -> ``[C, L, M]`` or ``[L, M]``."""
    if degree_weights is None:
        return modes
    return modes * (degree_weights if degree_weights.ndim == 3 else degree_weights[..., :, None])


def coefficient_magnitudes(transform: nn.Module, f: torch.Tensor, scale: float) -> torch.Tensor:
    """``scale`` times the magnitudes of ``transform(f)``, computed in float32 with autocast off (a bf16 SHT loses
    the small coefficients the spectral CRPS scores)."""
    with torch.autocast(device_type="cuda" if f.is_cuda else "cpu", enabled=False):
        return transform(f.float()).abs() * scale


class SpectralCRPSLoss(nn.Module):
    r"""Ensemble CRPS of spherical-harmonic coefficient magnitudes.

    .. math::

        \hat f_{lm} = \frac{\mathrm{SHT}(f)_{lm}}{\sqrt{4\pi}},\qquad
        L = \frac1B\sum_b \sum_c w_c \sum_{l}\sum_{m=0}^{l} c_m\, d_{c,l}\,
        \mathrm{CRPS}_\alpha(\{|\hat f^e_{lm}|\}_e, |\hat f^*_{lm}|), \quad c_0 = 1,\; c_{m>0} = 2,

    with the orthonormal SHT, so that :math:`\sum_{lm} c_m |\hat f_{lm}|^2` is the spherical mean of
    :math:`f^2` (Parseval) and the weights :math:`c_m` count the :math:`\pm m` pair of a real field. Magnitudes
    make the score insensitive to the phase (position) of features and sensitive to their amplitude per scale,
    which penalises the blurring that the grid CRPS tolerates. ``lmax`` defaults to the exactly resolved band.
    ``coefficient_scale`` replaces the :math:`1/\sqrt{4\pi}` (makani divides the orthonormal coefficients by
    :math:`4\pi`, which scales the loss by :math:`1/\sqrt{4\pi}`; :func:`fcn3_loss` uses that to keep FCN3's balance).
    ``degree_weights`` :math:`d_{c,l}` (``[C, L]`` or ``[L]``; default 1, as in FCN3) re-weight the degrees, e.g.
    :func:`whitening_degree_weights`; per-mode weights :math:`d_{c,lm}` (``[C, L, L]``,
    :func:`whitening_mode_weights`) re-weight every coefficient. ``vector_pairs`` ``[(u, v), ...]`` (channel
    indices of eastward and northward wind) are scored as one vector field, by their spheroidal and toroidal
    coefficients (:class:`ChannelSHT`).
    """

    # buffers (registered in __init__), declared for type checkers
    mode_weights: torch.Tensor
    degree_weights: torch.Tensor | None
    lm_weights: torch.Tensor
    channel_weights: torch.Tensor | None

    def __init__(
        self,
        nlat: int,
        nlon: int,
        kernel: CRPSKernel,
        grid: str = "equiangular",
        lmax: int | None = None,
        channel_weights: torch.Tensor | Sequence[float] | None = None,
        coefficient_scale: float = 1.0 / math.sqrt(4.0 * math.pi),
        degree_weights: torch.Tensor | None = None,
        vector_pairs: Sequence[Sequence[int]] = (),
    ) -> None:
        super().__init__()
        self.kernel = kernel
        lmax, self.coefficient_scale = spectral_setup(nlat, nlon, grid, lmax, coefficient_scale, bool(vector_pairs))
        self.transform = ChannelSHT.serial(nlat, nlon, grid, lmax, vector_pairs)
        self.sht = self.transform.sht
        self.register_buffer("mode_weights", mode_weights(lmax), persistent=False)
        self.register_buffer("degree_weights", check_degree_weights(degree_weights, lmax), persistent=False)
        # the constant [C, L, M] (or [L, M]) product, formed once rather than on every loss call
        self.register_buffer("lm_weights", weighted_modes(self.mode_weights, self.degree_weights), persistent=False)
        w = _check_weights(channel_weights, None)
        self.register_buffer("channel_weights", None if w is None else w.float(), persistent=False)

    def coefficients(self, f: torch.Tensor) -> torch.Tensor:
        """Magnitudes :math:`|\\hat f_{lm}|` of ``f`` ``[..., C, H, W]`` -> ``[..., C, L, L]`` (float32 SHT)."""
        return coefficient_magnitudes(self.transform, f, self.coefficient_scale)

    def per_channel(self, forecast: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if forecast.ndim != 5:
            raise UsageError(f"forecast must be [E, B, C, H, W], got shape {tuple(forecast.shape)}")
        crps = crps_ensemble(self.coefficients(forecast), self.coefficients(target), self.kernel, ensemble_dim=0)
        return (crps * self.lm_weights).sum(dim=(-2, -1)).mean(dim=0)

    def forward(self, forecast: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return _weighted_sum(self.per_channel(forecast, target), self.channel_weights)


class CombinedLoss(nn.Module):
    """``sum_k weight_k * loss_k(forecast, target)`` (FCN3: grid CRPS + 0.1 x spectral CRPS)."""

    def __init__(self, losses: Sequence[nn.Module], weights: Sequence[float]) -> None:
        super().__init__()
        if len(losses) != len(weights) or not losses:
            raise UsageError(f"{len(losses)} losses but {len(weights)} weights")
        self.losses = nn.ModuleList(losses)
        self.weights = tuple(float(w) for w in weights)

    def forward(self, forecast: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return sum(w * loss(forecast, target) for w, loss in zip(self.weights, self.losses, strict=True))


#: makani's spectral-coefficient normalisation (orthonormal SHT divided by 4 pi).
MAKANI_SCALE = 1.0 / (4.0 * math.pi)


def fcn3_loss(
    nlat: int,
    nlon: int,
    kernel: CRPSKernel,
    grid: str = "equiangular",
    channel_weights: torch.Tensor | Sequence[float] | None = None,
    spectral_weight: float = 0.1,
    degree_weights: torch.Tensor | None = None,
    vector_pairs: Sequence[Sequence[int]] = (),
    spectral_channel_weights: torch.Tensor | Sequence[float] | None = None,
) -> CombinedLoss:
    """FCN3's objective: grid CRPS + ``spectral_weight`` x spectral CRPS, same kernel and channel weights.

    The spectral term uses makani's coefficient normalisation (orthonormal SHT / 4 pi), so that the relative
    weight 0.1 balances the two terms as in FCN3's training. ``degree_weights`` (default none, as in FCN3) and
    ``vector_pairs`` (wind channels scored as one vector field; default none) go to :class:`SpectralCRPSLoss`,
    which weighs the channels by ``spectral_channel_weights`` (default: ``channel_weights``).
    """
    spectral = SpectralCRPSLoss(
        nlat,
        nlon,
        kernel,
        grid,
        channel_weights=channel_weights if spectral_channel_weights is None else spectral_channel_weights,
        coefficient_scale=MAKANI_SCALE,
        degree_weights=degree_weights,
        vector_pairs=vector_pairs,
    )
    return CombinedLoss(
        [GridCRPSLoss(nlat, nlon, kernel, grid, channel_weights), spectral],
        [1.0, spectral_weight],
    )


SURFACE_WEIGHT_0P1 = frozenset({"u10m", "v10m", "u100m", "v100m", "tp", "sp", "msl", "tcwv", "sst"})
_LEVEL = re.compile(r"^([a-z]+)(\d+)$")


def auto_channel_weights(
    names: Sequence[str],
    std: Sequence[float] | torch.Tensor | None = None,
    diff_std: Sequence[float] | torch.Tensor | None = None,
) -> torch.Tensor:
    r"""FCN3's "auto" channel weights.

    Pressure-level channels ``<var><p>`` (``z500``) get :math:`0.001\,p`, the listed surface channels 0.1,
    ``t2m`` and ``2d`` 1.0, anything else 0.01; the weights are normalised to sum 1 and then, when both ``std`` and
    ``diff_std`` are given, multiplied by :math:`\sigma_c / \sigma_{\Delta t, c}` (channels that change little per
    step relative to their spread weigh more, as in GraphCast's normalisation of increments).
    """
    if not names:
        raise UsageError("auto_channel_weights needs at least one channel name")
    w = []
    for name in names:
        m = _LEVEL.match(name)
        if name in ("t2m", "2d"):
            w.append(1.0)
        elif name in SURFACE_WEIGHT_0P1:
            w.append(0.1)
        elif m:
            w.append(0.001 * int(m.group(2)))
        else:
            w.append(0.01)
    weights = torch.tensor(w, dtype=torch.float64)
    weights = weights / weights.sum()
    if (std is None) != (diff_std is None):
        raise UsageError("give both std and diff_std for the temporal-difference normalisation, or neither")
    if std is not None:
        s = torch.as_tensor(std, dtype=torch.float64).flatten()
        d = torch.as_tensor(diff_std, dtype=torch.float64).flatten()
        if s.numel() != len(names) or d.numel() != len(names):
            raise UsageError(f"std/diff_std need {len(names)} values, got {s.numel()}/{d.numel()}")
        if (d <= 0).any():
            raise UsageError("diff_std must be positive (a constant channel cannot be normalised)")
        weights = weights * s / d
    return weights


def rollout_loss(
    step: Callable[[torch.Tensor, int], torch.Tensor],
    initial: torch.Tensor,
    targets: Sequence[torch.Tensor] | torch.Tensor,
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    r"""Multistep loss :math:`\frac1T \sum_{k=1}^{T} L(\hat u_k, u^*_k)`, :math:`\hat u_k = F(\hat u_{k-1})`.

    Gradients flow through the whole rollout (no detaching between steps), so step ``k``'s error trains the
    earlier steps that produced its input. ``initial`` is the ensemble state ``[E, B, C, H, W]``; ``step`` advances
    it (drawing or advancing the noise itself).
    """
    if len(targets) == 0:
        raise UsageError("rollout_loss needs at least one target step")
    state = step(initial, 0)
    total = loss(state, targets[0])
    for k in range(1, len(targets)):  # summed in step order, as the distributed twin does
        state = step(state, k)
        total = total + loss(state, targets[k])
    return total / len(targets)
