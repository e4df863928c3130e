"""The winds' degree-1 flow advanced by a learned linear map (``FCN3Config.degree_one_pairs``), checked against
torch-harmonics' vector spherical-harmonic transform: the modes, the replacement of the network's degree-1 output,
the map's action (a rotation about the polar axis, axial scalings) and the config plumbing."""

from __future__ import annotations

import cmath
import math

import pytest
import torch
import torch_harmonics as th

from sciml.errors import UsageError
from sciml.forecasting.models import FCN3, count_parameters, expected_parameter_count, preset
from sciml.forecasting.models.planetary import degree_one_basis
from sciml.forecasting.sphere import latitudes_deg, longitudes_deg, quadrature_weights, tangent_components

PAIR = (2, 4)  # tiny preset: var0 at both levels, then var1: (u, v) at level 0
MEAN = torch.tensor([0.0, 0.0, 3.0, 0.0, -2.0, 0.0])
STD = torch.tensor([1.0, 1.0, 2.0, 1.0, 5.0, 1.0])


def _vsht(nlat: int, nlon: int) -> tuple[torch.nn.Module, torch.nn.Module]:
    kw = dict(lmax=(nlat + 1) // 2, mmax=(nlat + 1) // 2, grid="equiangular", norm="ortho")
    return th.RealVectorSHT(nlat, nlon, **kw).double(), th.InverseRealVectorSHT(nlat, nlon, **kw).double()


def _physical(state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    u, v = PAIR
    return state[:, u] * STD[u] + MEAN[u], state[:, v] * STD[v] + MEAN[v]


def _coeffs(state: torch.Tensor, vsht) -> torch.Tensor:
    """torch-harmonics' (spheroidal, toroidal) coefficients ``[B, 2, L, M]`` of the pair in physical units."""
    return vsht(tangent_components(*_physical(state)))


def _models(**map_values):
    """A tiny FCN3 with the degree-1 map (float64, given map values, non-trivial units) and its twin without it."""
    cfg = preset("tiny", degree_one_pairs=(PAIR,))
    torch.manual_seed(0)
    model = FCN3(cfg).double()
    model.degree_one.set_normalisation(MEAN, STD)
    with torch.no_grad():
        for name, value in map_values.items():
            getattr(model.degree_one, name).copy_(value)
    raw = FCN3(cfg).double()
    raw.load_state_dict(model.state_dict())
    raw.degree_one = None
    g = torch.Generator().manual_seed(3)
    x, aux, z = (torch.randn(2, c, cfg.nlat, cfg.nlon, generator=g, dtype=torch.float64) for c in (6, 1, 2))
    with torch.no_grad():
        return cfg, x, model(x, aux, z), raw(x, aux, z)


def test_modes_are_orthogonal_with_norm_two_thirds_and_pure_degree_one():
    nlat, nlon = 33, 64
    basis = degree_one_basis(latitudes_deg(nlat), longitudes_deg(nlon))  # [6, 2, H, W]
    q = quadrature_weights(nlat, nlon)
    gram = torch.einsum("kcij,lcij,ij->kl", basis, basis, q.expand(-1, nlon))
    torch.testing.assert_close(gram, torch.eye(6, dtype=torch.float64) * 2 / 3, rtol=0, atol=1e-13)
    vsht, _ = _vsht(nlat, nlon)
    c = vsht(tangent_components(basis[:, 0], basis[:, 1]))
    power = c.abs() ** 2
    assert float(power[:, :, 1].sum()) > 1.0
    assert float(power[:, :, 2:].sum() + power[:, :, 0].sum()) < 1e-24 * float(power.sum()) + 1e-26
    # each mode is one kind: rotations toroidal (index 1), cross-sphere flows spheroidal (index 0)
    assert float(power[:3, 0].sum()) < 1e-24 and float(power[3:, 1].sum()) < 1e-24


def test_identity_map_keeps_the_input_degree_one_flow_and_the_network_keeps_every_other_degree():
    cfg, x, out, raw = _models()
    vsht, _ = _vsht(cfg.nlat, cfg.nlon)
    co, cr, ci = _coeffs(out, vsht), _coeffs(raw, vsht), _coeffs(x, vsht)
    assert float((cr[:, :, 1, :2] - ci[:, :, 1, :2]).abs().max()) > 0.1  # the network's own degree 1 differs
    torch.testing.assert_close(co[:, :, 1, :2], ci[:, :, 1, :2], rtol=0, atol=1e-6)
    torch.testing.assert_close(co[:, :, 2:], cr[:, :, 2:], rtol=0, atol=1e-6)
    others = [c for c in range(cfg.n_channels) if c not in PAIR]
    torch.testing.assert_close(out[:, others], raw[:, others], rtol=0, atol=0)


def test_a_complex_phase_turns_the_tilted_flow_about_the_polar_axis():
    """M = exp(i alpha): the degree-1 flow of the output is the input's, turned eastward by alpha (a whole number
    of grid columns, so the expected field is the input's rolled along longitude)."""
    nlon, shift = 64, 5
    alpha = 2 * math.pi * shift / nlon
    phase = cmath.exp(1j * alpha)
    eye = torch.eye(2, dtype=torch.float64)[None]
    equatorial = torch.stack([eye * phase.real, eye * phase.imag], dim=-1)
    cfg, x, out, _ = _models(equatorial=equatorial)
    vsht, ivsht = _vsht(cfg.nlat, cfg.nlon)

    def degree_one_field(state):
        c = _coeffs(state, vsht)
        keep = torch.zeros_like(c)
        keep[:, :, 1] = c[:, :, 1]
        return ivsht(keep)

    want = torch.roll(degree_one_field(x), shifts=shift, dims=-1)
    torch.testing.assert_close(degree_one_field(out), want, rtol=0, atol=1e-6)


def test_the_axial_block_scales_the_superrotation_and_the_cross_equator_flow():
    a, b = 0.9, -0.5
    cfg, x, out, _ = _models(axial=torch.tensor([[[a, 0.0], [0.0, b]]], dtype=torch.float64))
    vsht, _ = _vsht(cfg.nlat, cfg.nlon)
    co, ci = _coeffs(out, vsht), _coeffs(x, vsht)
    torch.testing.assert_close(co[:, 1, 1, 0], a * ci[:, 1, 1, 0], rtol=0, atol=1e-6)  # toroidal l=1, m=0
    torch.testing.assert_close(co[:, 0, 1, 0], b * ci[:, 0, 1, 0], rtol=0, atol=1e-6)  # spheroidal l=1, m=0
    torch.testing.assert_close(co[:, :, 1, 1], ci[:, :, 1, 1], rtol=0, atol=1e-6)  # m=1 untouched (M = I)


def test_gradients_reach_the_map_and_the_network_but_not_its_degree_one_output():
    cfg = preset("tiny", degree_one_pairs=(PAIR,))
    torch.manual_seed(0)
    model = FCN3(cfg)
    x, aux, z = (torch.randn(2, c, cfg.nlat, cfg.nlon) for c in (6, 1, 2))
    model(x, aux, z).square().mean().backward()
    assert float(model.degree_one.axial.grad.abs().sum()) > 0
    assert float(model.degree_one.equatorial.grad.abs().sum()) > 0
    assert all(p.grad is not None for p in model.parameters())


def test_config_checks_and_parameter_count():
    cfg = preset("tiny", degree_one_pairs=((2, 4), (3, 5)))
    torch.manual_seed(0)
    model = FCN3(cfg)
    assert count_parameters(model) == expected_parameter_count(cfg) == expected_parameter_count(preset("tiny")) + 24
    assert "degree_one.mean" in model.state_dict() and "degree_one" not in str(FCN3(preset("tiny")).state_dict())
    for bad in (((2, 2),), ((2, 4), (4, 5)), ((2, 6),), ((2, 4, 5),)):
        with pytest.raises(UsageError, match="degree_one_pairs"):
            preset("tiny", degree_one_pairs=bad)
    with pytest.raises(UsageError, match="clamped"):
        preset("tiny", degree_one_pairs=((2, 4),), clamp_channels=(4,))


def test_degree_one_bench_recovers_a_known_multiplier_and_mode_power():
    """bench/degree_one.py: coefficients of a known flow (the modes' amplitudes in m/s), and on an AR(1) series
    c_{t+1} = k c_t + e_t the multiplier k and the residual share var(e) / var(c)."""
    import importlib.util
    from pathlib import Path

    import numpy as np

    path = Path(__file__).resolve().parents[1] / "bench" / "degree_one.py"
    spec = importlib.util.spec_from_file_location("degree_one_bench", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    lat, lon = latitudes_deg(33).numpy(), longitudes_deg(64).numpy()
    basis = degree_one_basis(torch.tensor(lat), torch.tensor(lon)).numpy()
    amp = np.array([[1.0, -2.0, 10.0, 0.5, 0.0, -0.3]])
    flow = np.einsum("tk,kchw->tchw", amp, basis)
    np.testing.assert_allclose(bench.coefficients(flow[:, 0], flow[:, 1], lat, lon), amp, atol=1e-12)
    rng = np.random.default_rng(0)
    k, n = 0.9 * np.exp(0.3j), 20000
    c = np.zeros((n, 6))
    z = np.zeros(n, dtype=complex)
    for t in range(1, n):
        z[t] = k * z[t - 1] + rng.normal() + 1j * rng.normal()
    c[:, 0], c[:, 1], c[:, 2] = z.real, z.imag, 5.0
    out = bench.predictability(c, np.zeros(n, dtype=int), [1, 2])["T_x+iT_y"]
    assert abs(out["lag1"]["abs_k"] - 0.9) < 0.01 and abs(out["lag1"]["phase_deg"] - np.degrees(0.3)) < 0.5
    assert abs(out["lag1"]["residual_share"] - (1 - 0.81)) < 0.01  # stationary var = var(e) / (1 - |k|^2)
    assert abs(out["lag2"]["abs_k"] - 0.81) < 0.015
    # a new segment breaks the pairs: an independent second half adds nothing to the lag-1 pairs across it
    seg = (np.arange(n) >= n // 2).astype(int)
    assert bench.predictability(c, seg, [1])["T_z"]["lag1"]["residual_share"] < 1e-12
