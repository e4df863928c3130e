"""CRPS losses against properscoring / scoringrules, closed forms and a brute-force O(N^2) reference."""

from __future__ import annotations

import math

import numpy as np
import properscoring as ps
import pytest
import scoringrules as sr
import torch
import torch_harmonics as th

from sciml.errors import UsageError
from sciml.forecasting.losses import (
    AlmostFairCRPS,
    ChannelSHT,
    CRPSKernel,
    FairCRPS,
    GridCRPSLoss,
    SpectralCRPSLoss,
    StandardCRPS,
    auto_channel_weights,
    crps_ensemble,
    degree_amplitudes,
    fcn3_loss,
    mode_amplitudes,
    mode_weights,
    rollout_loss,
    whitening_degree_weights,
    whitening_mode_weights,
)
from sciml.forecasting.sphere import latitudes_deg, quadrature_weights


def _data(n: int, shape=(7, 3), seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, *shape)), rng.normal(size=shape)


@pytest.mark.parametrize("n", [2, 5, 16])
def test_standard_crps_equals_properscoring(n: int) -> None:
    fc, obs = _data(n, seed=n)
    ours = crps_ensemble(torch.from_numpy(fc), torch.from_numpy(obs), StandardCRPS()).numpy()
    ref = ps.crps_ensemble(obs, np.moveaxis(fc, 0, -1))
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6)


@pytest.mark.parametrize("n", [2, 5, 16])
def test_fair_crps_equals_scoringrules(n: int) -> None:
    fc, obs = _data(n, seed=10 + n)
    ours = crps_ensemble(torch.from_numpy(fc), torch.from_numpy(obs), FairCRPS()).numpy()
    ref = sr.crps_ensemble(obs, fc, m_axis=0, estimator="fair")
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6)


@pytest.mark.parametrize("n", [2, 5, 16])
@pytest.mark.parametrize("alpha", [0.3, 0.95])
def test_almost_fair_is_the_stated_mix(n: int, alpha: float) -> None:
    fc, obs = (torch.from_numpy(a) for a in _data(n, seed=20 + n))
    mix = alpha * crps_ensemble(fc, obs, FairCRPS()) + (1 - alpha) * crps_ensemble(fc, obs, StandardCRPS())
    torch.testing.assert_close(crps_ensemble(fc, obs, AlmostFairCRPS(alpha)), mix, rtol=0, atol=1e-12)


def test_single_member() -> None:
    fc, obs = (torch.from_numpy(a) for a in _data(1))
    torch.testing.assert_close(crps_ensemble(fc, obs, StandardCRPS()), (fc[0] - obs).abs())
    with pytest.raises(UsageError, match="at least 2 ensemble members"):
        crps_ensemble(fc, obs, FairCRPS())
    with pytest.raises(UsageError, match="at least 2 ensemble members"):
        crps_ensemble(fc, obs, AlmostFairCRPS(0.5))
    with pytest.raises(UsageError, match=r"\[0, 1\]"):
        CRPSKernel(1.5)
    with pytest.raises(UsageError, match="do not match"):
        crps_ensemble(fc, obs[:2], StandardCRPS())


@pytest.mark.parametrize("kernel", [StandardCRPS(), FairCRPS(), AlmostFairCRPS(0.9)])
def test_sorted_form_and_gradient_match_pairwise_definition(kernel: CRPSKernel) -> None:
    """The O(N log N) form agrees with the O(N^2) definition in value and gradient (ties excluded)."""
    fc, obs = (torch.from_numpy(a) for a in _data(6, seed=3))
    fc1 = fc.clone().requires_grad_(True)
    fc2 = fc.clone().requires_grad_(True)
    n = fc.shape[0]
    pair_coef = (n - 1 + kernel.alpha) / (2 * n * n * (n - 1))
    pairwise = (fc2 - obs).abs().mean(0) - pair_coef * (fc2[:, None] - fc2[None, :]).abs().sum((0, 1))
    sorted_form = crps_ensemble(fc1, obs, kernel)
    torch.testing.assert_close(sorted_form, pairwise.detach(), rtol=0, atol=1e-12)
    sorted_form.sum().backward()
    pairwise.sum().backward()
    torch.testing.assert_close(fc1.grad, fc2.grad, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "kernel", [StandardCRPS(antithetic=True), FairCRPS(antithetic=True), AlmostFairCRPS(0.9, True)]
)
def test_antithetic_kernel_is_the_pairwise_definition_without_partner_pairs(kernel: CRPSKernel) -> None:
    """skill - (N-1+alpha)/(2N) * mean of |x_i - x_j| over the N(N-2) ordered pairs that are not partners."""
    fc, obs = (torch.from_numpy(a) for a in _data(6, seed=5))
    fc1 = fc.clone().requires_grad_(True)
    fc2 = fc.clone().requires_grad_(True)
    n = fc.shape[0]
    idx = torch.arange(n)
    keep = (idx[:, None] // 2 != idx[None, :] // 2).to(fc.dtype)  # different partner pairs only
    assert int(keep.sum()) == n * (n - 2)
    gaps = ((fc2[:, None] - fc2[None, :]).abs() * keep.reshape(n, n, 1, 1)).sum((0, 1)) / (n * (n - 2))
    pairwise = (fc2 - obs).abs().mean(0) - (n - 1 + kernel.alpha) / (2 * n) * gaps
    ours = crps_ensemble(fc1, obs, kernel)
    torch.testing.assert_close(ours, pairwise.detach(), rtol=0, atol=1e-12)
    ours.sum().backward()
    pairwise.sum().backward()
    torch.testing.assert_close(fc1.grad, fc2.grad, rtol=0, atol=1e-12)


def _gaussian_crps(mu: float, sigma: float, y: float) -> float:
    """Closed-form CRPS of N(mu, sigma^2) at y (Gneiting & Raftery 2007)."""
    from scipy.stats import norm

    z = (y - mu) / sigma
    return sigma * (z * (2 * norm.cdf(z) - 1) + 2 * norm.pdf(z) - 1 / math.sqrt(math.pi))


def test_antithetic_ensembles_need_the_partner_free_spread_term() -> None:
    """Antithetic members x = mu +- sigma*eps (a response linear in the noise), N = 4, fixed observation y.

    The partner-free fair CRPS is unbiased for the Gaussian closed form (within 5 standard errors of 200,000
    ensembles); the ordinary fair CRPS on the same ensembles is biased low by many standard errors (it credits the
    anti-correlated partner gap as spread). With 2 members the ordinary fair CRPS is max(|mu - y| - |d|, 0): flat,
    never penalising too much spread.
    """
    gen = torch.Generator().manual_seed(0)
    mu, sigma, y = 0.3, 1.7, -0.4
    eps = torch.randn(2, 200_000, generator=gen, dtype=torch.float64)
    half = mu + sigma * eps
    fc = torch.stack([half[0], 2 * mu - half[0], half[1], 2 * mu - half[1]])  # partners (0,1), (2,3)
    obs = torch.full((fc.shape[1],), y, dtype=torch.float64)
    exact = _gaussian_crps(mu, sigma, y)
    for kernel, biased in ((FairCRPS(antithetic=True), False), (FairCRPS(), True)):
        v = crps_ensemble(fc, obs, kernel)
        err = float(v.std()) / math.sqrt(v.numel())
        off = abs(float(v.mean()) - exact)
        assert (off > 20 * err) if biased else (off < 5 * err), (kernel, float(v.mean()), exact, err)
    d = torch.tensor([0.1, 0.5, 1.0, 3.0, 10.0], dtype=torch.float64)
    two = crps_ensemble(torch.stack([mu + d, mu - d]), torch.full_like(d, y), FairCRPS())
    torch.testing.assert_close(two, (abs(mu - y) - d).clamp(min=0), rtol=0, atol=1e-12)
    for n in (2, 3, 5):
        with pytest.raises(UsageError, match="even ensemble of at least 4"):
            crps_ensemble(torch.zeros(n, 3), torch.zeros(3), FairCRPS(antithetic=True))


def test_quadrature_weights_integrate_exactly() -> None:
    """Sum q = 1 (so integral of 1 is 4 pi); Gauss weights equal numpy's leggauss; cos^2 integrates to 4 pi / 3."""
    for grid, nlat in (("equiangular", 33), ("legendre-gauss", 16)):
        q = quadrature_weights(nlat, 32, grid, normalize=False)
        assert float(q.sum() * 32) == pytest.approx(4 * math.pi, rel=1e-12)
        colat = torch.deg2rad(90 - latitudes_deg(nlat, grid))
        assert float((q[:, 0] * torch.cos(colat) ** 2).sum() * 32) == pytest.approx(4 * math.pi / 3, rel=1e-12)
    x, w = np.polynomial.legendre.leggauss(16)
    q = quadrature_weights(16, 1, "legendre-gauss", normalize=False)[:, 0].numpy() / (2 * math.pi)
    np.testing.assert_allclose(np.sort(q), np.sort(w), rtol=1e-12)


def test_grid_crps_is_quadrature_weighted_properscoring() -> None:
    rng = np.random.default_rng(4)
    e, b, c, h, w = 4, 2, 3, 9, 16
    fc, obs = rng.normal(size=(e, b, c, h, w)), rng.normal(size=(b, c, h, w))
    cw = np.array([0.2, 0.5, 0.3])
    loss = GridCRPSLoss(h, w, StandardCRPS(), channel_weights=cw).double()
    ours = float(loss(torch.from_numpy(fc), torch.from_numpy(obs)))
    q = quadrature_weights(h, w).numpy()  # [h, 1]
    pointwise = ps.crps_ensemble(obs, np.moveaxis(fc, 0, -1))  # [b, c, h, w]
    ref = float(((pointwise * q).sum(axis=(-2, -1)).mean(axis=0) * cw).sum())
    assert ours == pytest.approx(ref, rel=1e-6)
    # a perfect, spread-free ensemble scores 0
    target = torch.from_numpy(obs)
    assert float(loss(target.expand(e, *target.shape), target)) == pytest.approx(0.0, abs=1e-12)


def test_spectral_crps_equals_loop_over_modes() -> None:
    rng = np.random.default_rng(5)
    e, b, c, h, w = 3, 2, 2, 17, 32
    fc = torch.from_numpy(rng.normal(size=(e, b, c, h, w))).float()
    obs = torch.from_numpy(rng.normal(size=(b, c, h, w))).float()
    loss = SpectralCRPSLoss(h, w, FairCRPS())
    ours = float(loss(fc, obs))
    lmax = (h + 1) // 2
    sht = th.RealSHT(h, w, lmax=lmax, mmax=lmax, grid="equiangular", norm="ortho")
    f_hat = (sht(fc.double()) / math.sqrt(4 * math.pi)).abs().numpy()
    o_hat = (sht(obs.double()) / math.sqrt(4 * math.pi)).abs().numpy()
    total = 0.0
    for l in range(lmax):
        for m in range(l + 1):
            crps = sr.crps_ensemble(o_hat[..., l, m], f_hat[..., l, m], m_axis=0, estimator="fair")  # [b, c]
            total += (1 if m == 0 else 2) * crps.mean(axis=0).sum() / c
    assert ours == pytest.approx(total, rel=1e-5)


def test_spectral_weights_are_parseval_consistent() -> None:
    """sum_lm c_m |f_hat_lm|^2 equals the spherical mean of f^2 for a band-limited field."""
    h, w, lmax = 17, 32, 9
    loss = SpectralCRPSLoss(h, w, StandardCRPS())
    isht = th.InverseRealSHT(h, w, lmax=lmax, mmax=lmax, grid="equiangular", norm="ortho")
    g = torch.Generator().manual_seed(0)
    coeffs = torch.tril(torch.randn(lmax, lmax, generator=g)) + 1j * torch.tril(torch.randn(lmax, lmax, generator=g))
    f = isht(coeffs.to(torch.complex64))
    mags = loss.coefficients(f)
    lhs = float((loss.mode_weights * mags**2).sum())
    rhs = float((f.double() ** 2 * quadrature_weights(h, w)).sum())
    assert lhs == pytest.approx(rhs, rel=1e-5)


def test_spectral_crps_degree_weights_equal_loop_over_modes() -> None:
    """Per-channel degree weights d_cl multiply each (l, m) term: properscoring on the magnitudes, looped."""
    rng = np.random.default_rng(7)
    e, b, c, h, w = 4, 2, 2, 17, 32
    lmax = (h + 1) // 2
    fc = torch.from_numpy(rng.normal(size=(e, b, c, h, w))).float()
    obs = torch.from_numpy(rng.normal(size=(b, c, h, w))).float()
    d = rng.uniform(0.1, 3.0, size=(c, lmax))
    ours = float(SpectralCRPSLoss(h, w, StandardCRPS(), degree_weights=torch.from_numpy(d))(fc, obs))
    sht = th.RealSHT(h, w, lmax=lmax, mmax=lmax, grid="equiangular", norm="ortho")
    f_hat = (sht(fc.double()) / math.sqrt(4 * math.pi)).abs().numpy()
    o_hat = (sht(obs.double()) / math.sqrt(4 * math.pi)).abs().numpy()
    assert ours == pytest.approx(_looped_spectral_crps(f_hat, o_hat, np.repeat(d[:, :, None], lmax, -1)), rel=1e-5)


def _looped_spectral_crps(f_hat: np.ndarray, o_hat: np.ndarray, d: np.ndarray) -> float:
    """Channel mean of sum_lm c_m d_clm CRPS(|f_lm|): properscoring per coefficient, batch-averaged."""
    _, c, lmax, _ = o_hat.shape
    total = 0.0
    for ch in range(c):
        for l in range(lmax):
            for m in range(l + 1):
                crps = ps.crps_ensemble(o_hat[:, ch, l, m], np.moveaxis(f_hat[:, :, ch, l, m], 0, -1))  # [b]
                total += (1 if m == 0 else 2) * d[ch, l, m] * crps.mean() / c
    return total


def test_degree_amplitudes_of_a_single_harmonic() -> None:
    """A field with one coefficient f_32 = z has P(3) = 2|z|^2, so a_3 = |z| sqrt(2/7) and a_l = 0 elsewhere."""
    h, w, lmax = 17, 32, 9
    coeffs = torch.zeros(lmax, lmax, dtype=torch.complex128)
    coeffs[3, 2] = 0.6 - 0.8j  # |z| = 1
    isht = th.InverseRealSHT(h, w, lmax=lmax, mmax=lmax, grid="equiangular", norm="ortho").double()
    f = isht(coeffs)
    two = torch.stack([f, 2 * f])[:, None]  # [N=2, C=1, H, W]: mean power (1 + 4)/2 |z|^2 at m = +-2
    a = degree_amplitudes(two, lmax=lmax)
    expected = torch.zeros(1, lmax, dtype=torch.float64)
    expected[0, 3] = math.sqrt(2 * 2.5 / 7)
    torch.testing.assert_close(a, expected, atol=1e-12, rtol=1e-10)


def test_whitening_degree_weights_give_every_degree_the_same_say() -> None:
    """(2l+1) w_l a_l = sum_l' (2l'+1) a_l' / L for every degree above the floor (a floored degree gets less)."""
    a = torch.tensor([[5.0, 2.0, 1.0, 0.5, 1e-9], [1.0, 1.0, 1.0, 1.0, 1.0]], dtype=torch.float64)
    wts = whitening_degree_weights(a, floor=0.01)
    modes = 2 * torch.arange(5, dtype=torch.float64) + 1
    per_degree = modes * wts * a
    total = (modes * a).sum(-1)
    torch.testing.assert_close(per_degree[0, :4], (total[0] / 5).expand(4))  # each degree: 1/L of the total
    torch.testing.assert_close(per_degree[1].sum(), total[1])  # nothing floored: the total is kept
    assert float(wts[0, 4]) == pytest.approx(float((modes * a[0]).sum() / (5 * 9 * 0.05)))  # floor 0.01 x 5
    torch.testing.assert_close(wts[1], (modes * a[1]).sum() / (5 * modes))


@pytest.mark.parametrize(
    "bad, match",
    [
        (torch.ones(3), "must be \\[C, L\\]"),
        (torch.tensor([[1.0, float("nan")]]), "finite"),
        (torch.tensor([[0.0, 0.0]]), "no spectral power"),
    ],
)
def test_whitening_degree_weights_reject_bad_input(bad, match) -> None:
    with pytest.raises(UsageError, match=match):
        whitening_degree_weights(bad)


def test_spectral_crps_rejects_degree_weights_of_the_wrong_shape() -> None:
    with pytest.raises(UsageError, match="degree_weights must have shape"):
        SpectralCRPSLoss(17, 32, FairCRPS(), degree_weights=torch.ones(2, 5))


def test_fcn3_loss_combines_with_relative_weight() -> None:
    rng = np.random.default_rng(6)
    fc = torch.from_numpy(rng.normal(size=(2, 1, 2, 9, 16))).float()
    obs = torch.from_numpy(rng.normal(size=(1, 2, 9, 16))).float()
    total = fcn3_loss(9, 16, FairCRPS(), spectral_weight=0.1)(fc, obs)
    parts = GridCRPSLoss(9, 16, FairCRPS())(fc, obs) + 0.1 * SpectralCRPSLoss(9, 16, FairCRPS())(fc, obs) / math.sqrt(
        4 * math.pi
    )  # makani's coefficients are SHT / 4 pi; CRPS is positively homogeneous, so the term scales by 1/sqrt(4 pi)
    torch.testing.assert_close(total, parts)


def test_fcn3_loss_spectral_channel_weights_apply_to_the_spectral_term_only() -> None:
    rng = np.random.default_rng(9)
    fc = torch.from_numpy(rng.normal(size=(2, 1, 2, 9, 16))).float()
    obs = torch.from_numpy(rng.normal(size=(1, 2, 9, 16))).float()
    grid_w, spec_w = [0.5, 0.5], [1.5, 0.5]
    total = fcn3_loss(9, 16, FairCRPS(), channel_weights=grid_w, spectral_weight=0.1, spectral_channel_weights=spec_w)
    spectral = SpectralCRPSLoss(9, 16, FairCRPS()).per_channel(fc, obs) / math.sqrt(4 * math.pi)
    grid = GridCRPSLoss(9, 16, FairCRPS()).per_channel(fc, obs)
    expected = (grid * torch.tensor(grid_w)).sum() + 0.1 * (spectral * torch.tensor(spec_w)).sum()
    torch.testing.assert_close(total(fc, obs), expected)


def test_auto_channel_weights_hand_computed() -> None:
    names = ["t2m", "u10m", "z500", "q850", "foo"]
    raw = np.array([1.0, 0.1, 0.5, 0.85, 0.01])
    np.testing.assert_allclose(auto_channel_weights(names).numpy(), raw / raw.sum(), rtol=1e-15)
    std, dstd = [1.0, 2.0, 3.0, 4.0, 5.0], [0.5, 1.0, 1.0, 2.0, 5.0]
    expected = raw / raw.sum() * np.array(std) / np.array(dstd)
    np.testing.assert_allclose(auto_channel_weights(names, std, dstd).numpy(), expected, rtol=1e-15)
    with pytest.raises(UsageError, match="both std and diff_std"):
        auto_channel_weights(names, std=std)


def test_rollout_gradient_matches_closed_form() -> None:
    r"""x_{k+1} = a x_k, L = (1/2) sum_k (x_k - y_k)^2 / T; dL/da = (1/T) sum_k (a^k x0 - y_k) k a^{k-1} x0."""
    a = torch.tensor(0.9, dtype=torch.float64, requires_grad=True)
    x0 = torch.tensor([1.5], dtype=torch.float64)
    ys = [torch.tensor([v], dtype=torch.float64) for v in (1.0, 0.7, 0.2)]
    loss = rollout_loss(lambda s, k: a * s, x0, ys, lambda p, t: 0.5 * ((p - t) ** 2).sum())
    loss.backward()
    av, x = 0.9, 1.5
    expected = sum((av**k * x - y) * k * av ** (k - 1) * x for k, y in zip((1, 2, 3), (1.0, 0.7, 0.2), strict=True)) / 3
    assert float(a.grad) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(UsageError, match="at least one target"):
        rollout_loss(lambda s, k: s, x0, [], lambda p, t: p.sum())


# ------------------------------------------------------------------ wind pairs as vector fields, per-mode weights


def _lat_lon(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    lat = torch.linspace(math.pi / 2, -math.pi / 2, h, dtype=torch.float64)[:, None]  # north to south, with poles
    lon = (2 * math.pi * torch.arange(w, dtype=torch.float64) / w)[None, :]
    return lat, lon


def _flows(h: int, w: int) -> dict[tuple[int, int, int], tuple[torch.Tensor, torch.Tensor]]:
    """(u, v) of four flows of kinetic energy 8 pi / 3 on the unit sphere, keyed by (S=0/T=1, l, m) they excite.

    Solid-body rotation about the polar axis (T_10) and about an equatorial axis (the tilted rotation, T_11);
    the gradients of sin(lat) (S_10: a uniform cross-equatorial flow) and of cos(lat) cos(lon) (S_11).
    """
    lat, lon = _lat_lon(h, w)
    one = torch.ones_like(lat * lon)
    return {
        (1, 1, 0): (torch.cos(lat) * one, 0 * one),
        (1, 1, 1): (-torch.sin(lat) * torch.cos(lon), torch.sin(lon) * one),
        (0, 1, 0): (0 * one, torch.cos(lat) * one),
        (0, 1, 1): (-torch.sin(lon) * one, -torch.sin(lat) * torch.cos(lon)),
    }


def test_channel_sht_puts_rotation_and_divergence_into_single_coefficients() -> None:
    """Each closed-form flow is one spheroidal or toroidal coefficient; equal energy at l = 1: equal c_m |coef|^2."""
    h, w = 17, 32
    lmax = (h + 1) // 2
    sht = th.RealSHT(h, w, lmax=lmax, mmax=lmax, norm="ortho").double()
    vsht = th.RealVectorSHT(h, w, lmax=lmax, mmax=lmax, norm="ortho").double()
    transform = ChannelSHT(sht, vsht, [(2, 0)])  # u in channel 2, v in channel 0; channel 1 a scalar
    scalar = torch.randn(h, w, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    energies = []
    for (kind, l, m), (u, v) in _flows(h, w).items():
        coef = transform(torch.stack([v, scalar, u])[None])[0]  # [C=3, L, M]
        torch.testing.assert_close(coef[1], sht(scalar))  # the scalar channel is left alone
        st = coef[[2, 0]]  # S in u's place, T in v's
        peak = st[kind, l, m].abs()
        rest = st.abs().clone()
        rest[kind, l, m] = 0
        assert float(rest.max()) < 1e-9 * float(peak), (kind, l, m)
        energies.append((1 if m == 0 else 2) * float(peak) ** 2)
    np.testing.assert_allclose(energies, energies[0], rtol=1e-9)


def test_vector_coefficients_follow_parseval_with_l_l_plus_1() -> None:
    """A random band-limited flow: mean |u|^2 over the sphere = sum c_m l(l+1) (|S|^2 + |T|^2) / (4 pi)."""
    h, w, lmax = 33, 64, 17
    g = torch.Generator().manual_seed(4)
    st = torch.randn(2, lmax, lmax, generator=g, dtype=torch.float64) + 1j * torch.randn(
        2, lmax, lmax, generator=g, dtype=torch.float64
    )
    st = torch.tril(st)
    st[:, :, 0] = st[:, :, 0].real + 0j  # m = 0 of a real field
    st[:, 0] = 0  # no l = 0 vector harmonic
    flow = th.InverseRealVectorSHT(h, w, lmax=lmax, mmax=lmax, norm="ortho").double()(st)  # (u_theta, u_phi)
    u, v = flow[1], -flow[0]
    transform = ChannelSHT(
        th.RealSHT(h, w, lmax=lmax, mmax=lmax, norm="ortho").double(),
        th.RealVectorSHT(h, w, lmax=lmax, mmax=lmax, norm="ortho").double(),
        [(0, 1)],
    )
    coef = transform(torch.stack([u, v]))
    # S in u's place, T in v's (torch-harmonics' round trip is good to ~1e-7 here)
    torch.testing.assert_close(coef, st, rtol=1e-6, atol=1e-6)
    ll1 = (torch.arange(lmax, dtype=torch.float64) * torch.arange(1, lmax + 1, dtype=torch.float64))[:, None]
    energy = (mode_weights(lmax).double() * ll1 * coef.abs() ** 2).sum() / (4 * math.pi)
    mean_sq = ((u**2 + v**2) * quadrature_weights(h, w)).sum()
    assert float(mean_sq) == pytest.approx(float(energy), rel=1e-6)


def test_channel_sht_rejects_bad_pairs() -> None:
    sht = th.RealSHT(9, 16, lmax=5, mmax=5, norm="ortho")
    with pytest.raises(UsageError, match="distinct"):
        ChannelSHT(sht, th.RealVectorSHT(9, 16, lmax=5, mmax=5, norm="ortho"), [(0, 1), (1, 2)])
    with pytest.raises(UsageError, match="vector SHT"):
        ChannelSHT(sht, None, [(0, 1)])
    with pytest.raises(UsageError, match="out of range"):
        ChannelSHT(sht, th.RealVectorSHT(9, 16, lmax=5, mmax=5, norm="ortho"), [(0, 3)])(torch.randn(3, 9, 16))


def test_spectral_crps_of_a_wind_pair_equals_loop_over_vector_modes() -> None:
    """With a (u, v) pair and per-mode weights: properscoring on |S_lm|, |T_lm| and the scalar |f_lm|, looped."""
    rng = np.random.default_rng(8)
    e, b, c, h, w = 4, 2, 3, 17, 32
    lmax = (h + 1) // 2
    fc = torch.from_numpy(rng.normal(size=(e, b, c, h, w))).float()
    obs = torch.from_numpy(rng.normal(size=(b, c, h, w))).float()
    d = np.tril(rng.uniform(0.1, 3.0, size=(c, lmax, lmax)))
    loss = SpectralCRPSLoss(h, w, StandardCRPS(), degree_weights=torch.from_numpy(d), vector_pairs=[(1, 2)])
    ours = float(loss(fc, obs))
    sht = th.RealSHT(h, w, lmax=lmax, mmax=lmax, norm="ortho").double()
    vsht = th.RealVectorSHT(h, w, lmax=lmax, mmax=lmax, norm="ortho").double()

    def mags(x: torch.Tensor) -> np.ndarray:  # [..., C, H, W] -> [..., C, L, M]: z500-like scalar, then S, T
        x = x.double()
        st = vsht(torch.stack([-x[..., 2, :, :], x[..., 1, :, :]], dim=-3))
        return (
            torch.stack([sht(x[..., 0, :, :]), st[..., 0, :, :], st[..., 1, :, :]], -3).abs() / math.sqrt(4 * math.pi)
        ).numpy()

    assert ours == pytest.approx(_looped_spectral_crps(mags(fc), mags(obs), d), rel=1e-5)


def test_mode_amplitudes_and_degree_amplitudes_of_a_tilted_rotation() -> None:
    """A tilted rotation of speed factor s in samples s = 1, 2 is T_11 alone: a_T,11 = |T_11| sqrt(5/2)."""
    h, w = 17, 32
    u, v = _flows(h, w)[(1, 1, 1)]
    fields = torch.stack([torch.stack([u, v]), 2 * torch.stack([u, v])])  # [N=2, C=2, H, W]
    modes = mode_amplitudes(fields, vector_pairs=[(0, 1)])
    lmax = (h + 1) // 2
    vsht = th.RealVectorSHT(h, w, lmax=lmax, mmax=lmax, norm="ortho").double()
    t11 = float(vsht(torch.stack([-v, u]))[1, 1, 1].abs())
    expected = torch.zeros(2, lmax, lmax, dtype=torch.float64)
    expected[1, 1, 1] = t11 * math.sqrt(2.5)
    torch.testing.assert_close(modes, expected, atol=1e-9 * t11, rtol=1e-9)
    # per degree: P(1) = 2 a_11^2 over 3 coefficients
    degrees = degree_amplitudes(fields, vector_pairs=[(0, 1)])
    assert float(degrees[1, 1]) == pytest.approx(t11 * math.sqrt(2.5 * 2 / 3), rel=1e-9)
    assert float(degrees[0].abs().max()) < 1e-9 * t11


def test_whitening_mode_weights_give_every_degree_of_every_channel_the_same_say() -> None:
    """sum_m c_m d_lm a_lm = K / L for every (channel, degree) above the floor, K the channel mean of sum c_m a_lm."""
    g = torch.Generator().manual_seed(5)
    a = torch.tril(torch.rand(2, 4, 4, generator=g, dtype=torch.float64) + 0.1)
    a[1] *= 1e-3  # a channel a thousand times smaller (the divergent wind) gets the same say
    a[0, 2, 1] = 1e-9  # one nearly empty coefficient: floored
    d = whitening_mode_weights(a, floor=0.01)
    cm = mode_weights(4).double()
    k = (cm * a).sum() / 2
    per_degree = (cm * d * a).sum(-1)
    torch.testing.assert_close(per_degree[1], (k / 4).expand(4))
    torch.testing.assert_close(per_degree[0, [0, 1, 3]], (k / 4).expand(3))
    assert float(d[0, 2, 1]) == pytest.approx(float(k / (4 * 5 * 0.01 * a[0].max())))
    assert float(d[0].triu(1).abs().max()) == 0.0  # no weight on m > l


@pytest.mark.parametrize(
    "bad, match",
    [
        (torch.ones(2, 3), "must be \\[C, L, L\\]"),
        (torch.full((1, 2, 2), float("inf")), "finite"),
        (torch.zeros(1, 2, 2), "no spectral power"),
    ],
)
def test_whitening_mode_weights_reject_bad_input(bad, match) -> None:
    with pytest.raises(UsageError, match=match):
        whitening_mode_weights(bad)
