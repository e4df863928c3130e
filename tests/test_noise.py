"""AR(1) heat-kernel noise on the sphere against the closed-form spectrum, variance and autocorrelation."""

from __future__ import annotations

import math

import pytest
import torch
import torch_harmonics as th

from sciml.errors import UsageError
from sciml.forecasting.noise import (
    FCN3_LENGTH_SCALES_KM,
    DiffusionNoiseS2,
    EnsembleNoise,
    fcn3_noise,
    heat_kernel_kT,
)
from sciml.forecasting.sphere import quadrature_weights

NLAT, NLON = 33, 64
KT = (heat_kernel_kT(400.0), heat_kernel_kT(1600.0))  # two channels: a small and a large length scale


def closed_form_C(kT: float, lmax: int, sigma: float = 1.0) -> torch.Tensor:
    """C_l = 4 pi sigma^2 exp(-kT l(l+1)) / sum_{l'=1}^{lmax-1} (2l'+1) exp(-kT l'(l'+1)), C_0 = 0."""
    vals = [0.0] + [math.exp(-kT * l * (l + 1)) for l in range(1, lmax)]
    norm = sum((2 * l + 1) * v for l, v in enumerate(vals))
    return torch.tensor([4 * math.pi * sigma**2 * v / norm for v in vals], dtype=torch.float64)


def test_fcn3_kT_values_match_makani_config() -> None:
    published = [3.0806e-5, 1.2322e-4, 4.9289e-4, 1.9716e-3, 7.8862e-3, 3.1545e-2, 1.2618e-1, 5.0472e-1]
    ours = [heat_kernel_kT(s) for s in FCN3_LENGTH_SCALES_KM]
    assert ours == pytest.approx(published, rel=2e-4)
    assert fcn3_noise(NLAT, NLON).n_channels == 8


def _coeffs_from_grid(noise: DiffusionNoiseS2, field: torch.Tensor) -> torch.Tensor:
    sht = th.RealSHT(NLAT, NLON, lmax=noise.lmax, mmax=noise.lmax, grid="equiangular", norm="ortho")
    return sht(field.double())


def _per_degree_power(c: torch.Tensor) -> torch.Tensor:
    """Mean over samples and orders m = 0..l of |c_lm|^2 (each has expectation C_l); [C, L]."""
    lmax = c.shape[-2]
    mask = torch.tril(torch.ones(lmax, lmax, dtype=torch.float64))
    power = (c.abs() ** 2 * mask).sum(dim=-1).mean(dim=0)
    return power / torch.arange(1, lmax + 1, dtype=torch.float64)


def test_stationary_per_degree_variance_matches_heat_kernel() -> None:
    noise = DiffusionNoiseS2(NLAT, NLON, KT, sigma=1.3)
    n = 400
    g = torch.Generator().manual_seed(0)
    field = noise.to_grid(noise.sample_stationary(n, g))
    est = _per_degree_power(_coeffs_from_grid(noise, field))  # through the grid: tests synthesis too
    for c, kT in enumerate(KT):
        expected = closed_form_C(kT, noise.lmax, sigma=1.3)
        assert est[c, 0] < 1e-10  # zero-mean field
        l = torch.arange(1, noise.lmax, dtype=torch.float64)
        # relative std of the estimator: m=0 is chi^2_1 (var 2), m>0 exponential (var 1), over l+1 orders
        rel_sd = torch.sqrt((2 + l) / (l + 1) ** 2 / n)
        rel_err = (est[c, 1:] / expected[1:] - 1).abs()
        assert (rel_err < 5 * rel_sd).all(), (c, rel_err, rel_sd)


def test_l_min_leaves_out_the_planetary_degree_and_keeps_the_variance() -> None:
    """noise.l_min = 2: no power at l = 1 (closed form: the heat kernel renormalised over l >= 2), sigma^2 kept."""
    noise = DiffusionNoiseS2(NLAT, NLON, KT, sigma=0.8, l_min=2)
    n = 400
    field = noise.to_grid(noise.sample_stationary(n, torch.Generator().manual_seed(5)))
    est = _per_degree_power(_coeffs_from_grid(noise, field))
    l = torch.arange(noise.lmax, dtype=torch.float64)
    for c, kT in enumerate(KT):
        decay = torch.exp(-kT * l * (l + 1))
        decay[:2] = 0.0
        expected = 4 * math.pi * 0.64 * decay / ((2 * l + 1) * decay).sum()
        assert float(((2 * l + 1) * expected).sum() / (4 * math.pi)) == pytest.approx(0.64)
        assert est[c, :2].max() < 1e-10  # nothing at l = 0, 1
        rel_sd = torch.sqrt((2 + l[2:]) / (l[2:] + 1) ** 2 / n)
        assert ((est[c, 2:] / expected[2:] - 1).abs() < 5 * rel_sd).all()
    with pytest.raises(UsageError, match="l_min"):
        DiffusionNoiseS2(NLAT, NLON, KT, l_min=0)


def test_pointwise_variance_is_sigma_squared() -> None:
    sigma = 0.7
    noise = DiffusionNoiseS2(NLAT, NLON, KT, sigma=sigma)
    # closed form: sum_l (2l+1)/(4 pi) C_l = sigma^2
    for kT in KT:
        C = closed_form_C(kT, noise.lmax, sigma)
        assert float(((2 * torch.arange(noise.lmax) + 1) * C).sum() / (4 * math.pi)) == pytest.approx(sigma**2)
    n = 1000
    g = torch.Generator().manual_seed(1)
    field = noise.to_grid(noise.sample_stationary(n, g)).double()  # [n, C, H, W]
    var = field.square().mean(dim=0)  # known zero mean
    q = quadrature_weights(NLAT, NLON)
    area_mean = (var * q).sum(dim=(-2, -1))
    # the large-scale channel has few degrees of freedom per sample: allow 10 % (>5 sampling sd here)
    assert area_mean.numpy() == pytest.approx([sigma**2] * 2, rel=0.1)
    assert (var / sigma**2 - 1).abs().max() < 0.35  # every grid point, including the poles


def test_lag1_autocorrelation_is_phi_and_ar_keeps_stationarity() -> None:
    lam = 0.5
    noise = DiffusionNoiseS2(NLAT, NLON, KT, lam=lam)
    phi = math.exp(-lam)
    g = torch.Generator().manual_seed(2)
    n = 200
    s0 = noise.sample_stationary(n, g)
    s1 = noise.step(s0, g)
    for _ in range(3):
        s1 = noise.step(s1, g)
    s0, s1 = s1, noise.step(s1, g)
    c0 = _coeffs_from_grid(noise, noise.to_grid(s0))
    c1 = _coeffs_from_grid(noise, noise.to_grid(s1))
    for c, kT in enumerate(KT):
        C = closed_form_C(kT, noise.lmax)
        mask = torch.tril(torch.ones(noise.lmax, noise.lmax, dtype=torch.float64))
        num = ((c0[:, c].conj() * c1[:, c]).real * mask).sum()
        den = ((c0[:, c].abs() ** 2) * mask).sum()
        rho = float(num / den)
        # effective number of independent real pairs of the variance-weighted pooled estimator:
        # (sum w)^2 / sum w^2 over real degrees of freedom (m = 0: one, m > 0: two) with weight C_l
        dof = mask[1:] * torch.tensor([1.0] + [2.0] * (noise.lmax - 1), dtype=torch.float64)
        n_eff = n * float((C[1:, None] * dof).sum() ** 2 / (C[1:, None] ** 2 * dof).sum())
        sd = math.sqrt((1 - phi**2) / n_eff)
        assert abs(rho - phi) < 5 * sd, (c, rho, phi, sd)
        # still stationary after 5 AR steps
        est = _per_degree_power(c1[:, c : c + 1])[0, 1:]
        l = torch.arange(1, noise.lmax, dtype=torch.float64)
        assert ((est / C[1:] - 1).abs() < 5 * torch.sqrt((2 + l) / (l + 1) ** 2 / n)).all()


def test_antithetic_pairs_sum_to_zero_along_a_rollout() -> None:
    noise = DiffusionNoiseS2(NLAT, NLON, KT)
    ens = EnsembleNoise(noise, members=4, seed=7, centered=True)
    state = ens.initial(batch=2)
    for _ in range(3):
        z = ens.to_grid(state)
        assert torch.equal(z[0], -z[1]) and torch.equal(z[2], -z[3])
        assert (z[0] - z[2]).abs().max() > 0.1
        state = ens.step(state)


def test_member_streams_are_reproducible_and_layout_independent() -> None:
    noise = DiffusionNoiseS2(NLAT, NLON, KT)
    a = EnsembleNoise(noise, members=4, seed=11)
    b = EnsembleNoise(noise, members=4, seed=11)
    sa, sb = a.initial(1), b.initial(1)
    assert torch.equal(sa, sb)
    assert torch.equal(a.step(sa), b.step(sb))
    assert (sa[0] - sa[1]).abs().max() > 0
    # a process holding only members 2 and 3 draws exactly the same noise for them
    part = EnsembleNoise(noise, members=4, seed=11, member_indices=[2, 3])
    assert torch.equal(part.initial(1), sa[2:])
    assert not torch.equal(EnsembleNoise(noise, members=4, seed=12).initial(1), sa)


def test_bad_noise_input_raises() -> None:
    noise = DiffusionNoiseS2(NLAT, NLON, KT)
    with pytest.raises(UsageError, match="even ensemble"):
        EnsembleNoise(noise, members=3, seed=0, centered=True)
    with pytest.raises(UsageError, match="lmax"):
        DiffusionNoiseS2(NLAT, NLON, KT, lmax=40)
    with pytest.raises(UsageError, match="sigma and lam"):
        DiffusionNoiseS2(NLAT, NLON, KT, lam=0.0)
    with pytest.raises(UsageError, match="noise state"):
        noise.step(torch.zeros(1, 3, 4, 4, dtype=torch.complex64), torch.Generator())


def test_exact_pointwise_variance_from_the_synthesis_basis() -> None:
    """Var z(x) = sum_lm Var(Re eta_lm) Re-basis(x)^2 + Var(Im eta_lm) Im-basis(x)^2 = sigma^2 at every point.

    Sampling-free: each coefficient's real and imaginary unit vectors are synthesised by the module's own inverse
    SHT, and the variances are those the sampler draws with (m = 0 real with C_l, m > 0 C_l / 2 per part).
    """
    sigma = 1.7
    noise = DiffusionNoiseS2(NLAT, NLON, KT, sigma=sigma)
    L = noise.lmax
    eye = torch.eye(L * L, dtype=torch.float64).reshape(L * L, L, L)
    basis_re = noise.isht.double()(eye.to(torch.complex128))  # [L*L, H, W]
    basis_im = noise.isht.double()(1j * eye.to(torch.complex128))
    m = torch.arange(L).repeat(L)
    l = torch.arange(L).repeat_interleave(L)
    for c, kT in enumerate(KT):
        C = closed_form_C(kT, L, sigma)[l] * (m <= l)
        var_re = torch.where(m == 0, C, C / 2)
        var_im = torch.where(m == 0, torch.zeros_like(C), C / 2)
        var = (var_re[:, None, None] * basis_re**2 + var_im[:, None, None] * basis_im**2).sum(0)
        assert torch.allclose(var, torch.full_like(var, sigma**2), rtol=1e-10), (c, var.min(), var.max())
        # and the module's std buffer carries exactly sqrt(C_l) on m <= l
        torch.testing.assert_close(
            noise.std[c].double() ** 2,
            closed_form_C(kT, L, sigma)[:, None] * torch.tril(torch.ones(L, L, dtype=torch.float64)),
            rtol=1e-6,
            atol=1e-12,
        )
