"""FCN3-style network: shapes, the published parameter count, longitude-shift equivariance, gradients, determinism."""

from __future__ import annotations

import pytest
import torch

from sciml.errors import UsageError
from sciml.forecasting.models import (
    FCN3,
    FCN3_PUBLISHED_PARAMETERS,
    FCN3Config,
    count_parameters,
    ensemble_step,
    expected_parameter_count,
    preset,
)
from sciml.forecasting.models.layers import SerialSphereOps, SpectralConvDH, soft_clamp


def _inputs(cfg: FCN3Config, batch: int = 2, seed: int = 0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    shape = (batch, 0, cfg.nlat, cfg.nlon)

    def rnd(c: int) -> torch.Tensor:
        return torch.randn(shape[0], c, *shape[2:], generator=g, dtype=dtype)

    return rnd(cfg.n_channels), rnd(cfg.n_aux), rnd(cfg.n_noise)


@pytest.fixture(scope="module")
def tiny_model() -> FCN3:
    torch.manual_seed(0)
    return FCN3(preset("tiny", clamp_channels=(0, 3)))


@pytest.mark.parametrize("name", ["tiny", "demo"])
def test_preset_shapes(name: str) -> None:
    cfg = preset(name)
    torch.manual_seed(0)
    model = FCN3(cfg)
    x, aux, z = _inputs(cfg, batch=1)
    with torch.no_grad():
        y = model(x, aux, z)
    assert y.shape == (1, cfg.n_channels, cfg.nlat, cfg.nlon)
    assert torch.isfinite(y).all()
    assert count_parameters(model) == expected_parameter_count(cfg)


def test_fcn3_preset_layout() -> None:
    cfg = preset("fcn3")
    assert cfg.n_channels == 72
    assert cfg.internal_shape == (360, 720)
    assert cfg.embed_dim == 641 and cfg.block_in_dim == 677
    assert [cfg.is_global_block(i) for i in range(cfg.num_layers)].count(True) == 2


def test_fcn3_parameter_count_on_meta() -> None:
    """Built on the meta device (no memory): 710,867,670, FCN3's published count, and the closed form."""
    with torch.device("meta"):
        model = FCN3(preset("fcn3"))
    assert count_parameters(model) == FCN3_PUBLISHED_PARAMETERS
    assert expected_parameter_count(preset("fcn3")) == FCN3_PUBLISHED_PARAMETERS
    # two spectral blocks hold 2 * 677^2 * 360 complex weights = 93% of all parameters
    spectral = sum(p.numel() for n, p in model.named_parameters() if n.endswith("conv.weight") and p.ndim == 4)
    assert spectral == 2 * 677 * 677 * 360 * 2


def test_meta_model_has_the_real_parameter_shapes(tiny_model: FCN3) -> None:
    with torch.device("meta"):
        meta = FCN3(tiny_model.config)
    real = {k: tuple(v.shape) for k, v in tiny_model.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in meta.state_dict().items()} == real
    x, aux, z = (t.to("meta") for t in _inputs(tiny_model.config))
    with pytest.raises(RuntimeError, match="meta device"):
        meta(x, aux, z)


@pytest.mark.parametrize("shift", [2, 6, 32])
def test_longitude_shift_equivariance(tiny_model: FCN3, shift: int) -> None:
    """Rolling every input by k longitudes (k a multiple of the I/O-to-internal ratio) rolls the output."""
    cfg = tiny_model.config
    x, aux, z = _inputs(cfg)
    with torch.no_grad():
        y = tiny_model(x, aux, z)
        y_rolled = tiny_model(*(torch.roll(t, shift, dims=-1) for t in (x, aux, z)))
    err = (y_rolled - torch.roll(y, shift, dims=-1)).abs().max().item()
    assert err <= 2e-5 * y.abs().max().item()
    # a non-trivial test: the output is not longitude-invariant
    assert (torch.roll(y, shift, dims=-1) - y).abs().max().item() > 1e-2 * y.abs().max().item()


def test_each_spherical_layer_is_shift_equivariant(tiny_model: FCN3) -> None:
    h, w = tiny_model.config.internal_shape
    g = torch.Generator().manual_seed(1)
    feats = torch.randn(1, tiny_model.config.block_in_dim, h, w, generator=g)
    checks = [(blk.conv, feats, 1) for blk in tiny_model.blocks]
    x, _, _ = _inputs(tiny_model.config, batch=1)
    checks.append((tiny_model.atmo_encoder, x[:, 2:4], 2))
    checks.append((tiny_model.atmo_decoder, feats[:, : tiny_model.config.atmo_embed_dim], 1))
    for layer, inp, k in checks:
        with torch.no_grad():
            out = layer(inp)
            out_r = layer(torch.roll(inp, k, dims=-1))
        k_out = k * out.shape[-1] // inp.shape[-1]
        assert (out_r - torch.roll(out, k_out, dims=-1)).abs().max() <= 1e-5 * out.abs().max(), type(layer)


def test_spectral_conv_identity_weights_reproduce_bandlimited_field() -> None:
    """With w_iol = delta_io the DH convolution is SHT^-1 SHT = identity on fields of degree < lmax."""
    ops = SerialSphereOps()
    h, w = 16, 32
    sht, isht = ops.sht(h, w, 16, 17, "legendre-gauss"), ops.isht(h, w, 16, 17, "legendre-gauss")
    conv = SpectralConvDH(sht, isht, 3, 3)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[..., 0] = torch.eye(3)[:, :, None]
    g = torch.Generator().manual_seed(0)
    shape = (1, 3, isht.lmax, isht.mmax)  # torch-harmonics truncates triangularly: mmax = min(lmax, mmax)
    coeffs = torch.complex(torch.randn(shape, generator=g), torch.randn(shape, generator=g))
    coeffs = torch.tril(coeffs.real) + 1j * torch.tril(coeffs.imag)
    f = isht(coeffs)
    assert torch.allclose(conv(f), f, atol=1e-5 * f.abs().max().item())


def test_gradients_reach_every_parameter(tiny_model: FCN3) -> None:
    tiny_model.zero_grad()
    x, aux, z = _inputs(tiny_model.config)
    tiny_model(x, aux, z).square().mean().backward()
    for name, p in tiny_model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().max() > 0, name
    tiny_model.zero_grad()


def test_noise_changes_the_output(tiny_model: FCN3) -> None:
    x, aux, z = _inputs(tiny_model.config)
    with torch.no_grad():
        d = (tiny_model(x, aux, z) - tiny_model(x, aux, -z)).abs().max()
    assert d > 1e-4


def test_deterministic_under_fixed_seed() -> None:
    cfg = preset("tiny")
    outs = []
    for _ in range(2):
        torch.manual_seed(123)
        model = FCN3(cfg)
        with torch.no_grad():
            outs.append(model(*_inputs(cfg, seed=5)))
    assert torch.equal(outs[0], outs[1])
    torch.manual_seed(124)
    with torch.no_grad():
        other = FCN3(cfg)(*_inputs(cfg, seed=5))
    assert not torch.equal(outs[0], other)


def test_soft_clamp_closed_form_and_output_nonnegative(tiny_model: FCN3) -> None:
    x = torch.tensor([-1.0, 0.0, 0.25, 0.5, 2.0])
    assert torch.equal(soft_clamp(x), torch.tensor([0.0, 0.0, 0.0625, 0.25, 1.75]))
    with torch.no_grad():
        y = tiny_model(*_inputs(tiny_model.config))
    assert (y[:, [0, 3]] >= 0).all()
    assert (y[:, [1, 2]] < 0).any()  # unclamped channels keep their sign


def test_residual_model_adds_the_direct_models_output_to_the_state() -> None:
    """``residual=True``: u_{n+1} = u_n + F(u_n, a, z) with the same parameters (and count) as the direct model."""
    cfg = preset("tiny")
    torch.manual_seed(0)
    direct = FCN3(cfg)
    res = FCN3(preset("tiny", residual=True))
    res.load_state_dict(direct.state_dict())
    x, aux, z = _inputs(cfg)
    with torch.no_grad():
        f, y = direct(x, aux, z), res(x, aux, z)
    assert count_parameters(res) == count_parameters(direct) == expected_parameter_count(res.config)
    torch.testing.assert_close(y, x + f, rtol=0, atol=1e-6)
    assert (y - f).abs().max() > 0.5  # the state really is added, not a no-op
    # with the decoders zeroed the residual model is persistence
    for name, p in res.named_parameters():
        if name.startswith(("atmo_decoder", "surf_decoder")):
            p.data.zero_()
    with torch.no_grad():
        torch.testing.assert_close(res(x, aux, z), x, rtol=0, atol=0)


def test_bad_inputs_raise_usage_errors(tiny_model: FCN3) -> None:
    cfg = tiny_model.config
    x, aux, z = _inputs(cfg)
    with pytest.raises(UsageError, match="noise is required"):
        tiny_model(x, aux, None)
    with pytest.raises(UsageError, match="shape"):
        tiny_model(x[..., :-1], aux, z)
    with pytest.raises(UsageError, match="unknown model preset"):
        preset("huge")
    with pytest.raises(UsageError, match="multiple of the internal"):
        FCN3Config(nlat=33, nlon=66, scale_factor=4)
    with pytest.raises(UsageError, match="clamp_channels"):
        preset("tiny", clamp_channels=(99,))
    with pytest.raises(UsageError, match="unknown FCN3Config field"):
        preset("tiny", width=3)


def test_bf16_autocast_tracks_fp32(tiny_model: FCN3) -> None:
    """Under bf16 autocast (spherical transforms stay fp32) the output keeps fp32 dtype and stays close."""
    x, aux, z = _inputs(tiny_model.config)
    with torch.no_grad():
        ref = tiny_model(x, aux, z)
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
            low = tiny_model(x, aux, z)
    assert low.dtype == torch.float32
    # bf16 has an 8-bit mantissa (rel. 4e-3 per op); a few layers stay within 5 % of the output scale
    assert (low - ref).abs().max() < 5e-2 * ref.abs().max()


def test_ensemble_rollout_with_noise_and_crps_trains_every_parameter() -> None:
    """2-step rollout: AR(1) noise per member, fair CRPS (grid + spectral), gradients through both steps."""
    from sciml.forecasting.losses import FairCRPS, fcn3_loss, rollout_loss
    from sciml.forecasting.noise import DiffusionNoiseS2, EnsembleNoise

    cfg = preset("tiny")
    torch.manual_seed(0)
    model = FCN3(cfg)
    x, aux, _ = _inputs(cfg, batch=1)
    noise = EnsembleNoise(DiffusionNoiseS2(cfg.nlat, cfg.nlon, kT=[1e-3, 1e-2]), members=2, seed=0, centered=True)
    targets = [x + 0.1 * k for k in (1, 2)]
    loss_fn = fcn3_loss(cfg.nlat, cfg.nlon, FairCRPS())
    state = {"eta": noise.initial(batch=1)}

    def step(ens: torch.Tensor, k: int) -> torch.Tensor:
        if k > 0:
            state["eta"] = noise.step(state["eta"])
        return ensemble_step(model, ens, aux, noise.to_grid(state["eta"]))

    ens0 = x.unsqueeze(0).expand(2, *x.shape)
    loss = rollout_loss(step, ens0, targets, loss_fn)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and p.grad.abs().max() > 0 for p in model.parameters())
    # members differ only through the noise: with antithetic noise the two members are not equal
    with torch.no_grad():
        out = ensemble_step(model, ens0, aux, noise.to_grid(noise.initial(1)))
    assert (out[0] - out[1]).abs().max() > 1e-4


def test_config_yaml_round_trip_and_validation() -> None:
    from sciml.config import ConfigError, dump_yaml, from_dict, to_dict

    cfg = preset("fcn3")
    assert from_dict(FCN3Config, to_dict(cfg)) == cfg
    assert "clamp_channels" in dump_yaml(cfg)
    with pytest.raises(ConfigError, match="num_layers"):
        from_dict(FCN3Config, {**to_dict(cfg), "num_layers": 0})


def test_fcn3_architecture_at_small_grid() -> None:
    """The full FCN3 width (72 channels, 677-wide blocks, 10 layers) on a 33x64 grid: shape and water clamp."""
    cfg = preset("fcn3", nlat=33, nlon=64)
    torch.manual_seed(0)
    model = FCN3(cfg)
    assert count_parameters(model) == expected_parameter_count(cfg)
    x, aux, z = _inputs(cfg, batch=1)
    with torch.no_grad():
        y = model(x, aux, z)
    assert y.shape == (1, 72, 33, 64)
    assert (y[:, list(cfg.clamp_channels)] >= 0).all()  # tcwv and q at 13 levels


@pytest.mark.parametrize("overrides", [{}, {"n_levels": 3, "n_atmo_vars": 2, "n_surface": 1}])
def test_atmospheric_channels_are_encoded_level_by_level(overrides: dict) -> None:
    """Level k of the latent is the shared encoder applied to channels S + v*L + k (variable-major layout)."""
    cfg = preset("tiny", **overrides)
    torch.manual_seed(0)
    model = FCN3(cfg)
    x, _, _ = _inputs(cfg, batch=2)
    s, nl, e = cfg.n_surface, cfg.n_levels, cfg.atmo_embed_dim
    with torch.no_grad():
        feats = model.encode(x)
        for k in range(nl):
            idx = [s + v * nl + k for v in range(cfg.n_atmo_vars)]
            torch.testing.assert_close(feats[:, k * e : (k + 1) * e], model.atmo_encoder(x[:, idx]))
        torch.testing.assert_close(feats[:, nl * e :], model.surf_encoder(x[:, :s]))
        out = model.decode(feats)
        for k in range(nl):
            idx = [s + v * nl + k for v in range(cfg.n_atmo_vars)]
            torch.testing.assert_close(out[:, idx], model.atmo_decoder(feats[:, k * e : (k + 1) * e]))


def test_two_step_model_sees_the_scaled_tendency_and_nothing_more() -> None:
    """``input_steps=2``: the aux encoder's extra inputs are (x - prev) * s. With their weights zeroed the model is
    the one-step model with the same other weights; the output depends on prev only through (x - prev) * s."""
    one, two = preset("tiny"), preset("tiny", input_steps=2)
    torch.manual_seed(0)
    m2 = FCN3(two).eval()
    assert count_parameters(m2) == expected_parameter_count(two) > expected_parameter_count(one)
    assert two.n_aux_in == one.n_aux_in + one.n_channels
    x, aux, z = _inputs(two)
    prev = x + 0.3 * torch.randn_like(x)
    s = torch.linspace(0.5, 2.0, two.n_channels)
    with torch.no_grad():
        m2.tendency_scale.copy_(s)
        y = m2(x, aux, z, prev)
        y_other = m2(x, aux, z, prev + 0.1)
        # halving the scale while doubling x - prev leaves the input, hence the output, unchanged
        m2.tendency_scale.copy_(s / 2)
        y_half = m2(x, aux, z, 2 * prev - x)
        # with prev = x the tendency is zero whatever the scale
        zero_a = m2(x, aux, z, x)
        m2.tendency_scale.copy_(3 * s)
        zero_b = m2(x, aux, z, x)
    assert (y - y_other).abs().max() > 1e-3  # prev matters
    torch.testing.assert_close(y_half, y, rtol=0, atol=2e-5)
    torch.testing.assert_close(zero_a, zero_b, rtol=0, atol=0)
    assert (zero_a - y).abs().max() > 1e-3
    # the tendency columns (the last n_channels inputs of the aux encoder) zeroed: the one-step model
    sd = m2.state_dict()
    m1 = FCN3(one).eval()
    w1 = {k: v for k, v in sd.items() if k != "tendency_scale"}
    shapes = {k: v.shape for k, v in m1.state_dict().items()}
    assert set(shapes) == set(w1)
    for k, v in w1.items():
        if shapes[k] != v.shape:  # the aux encoder's weight: [out, in, basis] with groups = 1
            assert k.startswith("aux_encoder") and v.shape[1] == one.n_aux_in + one.n_channels
            sd[k] = v.clone()
            sd[k][:, one.n_aux_in :] = 0
            w1[k] = v[:, : one.n_aux_in]
    m1.load_state_dict(w1)
    m2.load_state_dict(sd)
    with torch.no_grad():
        torch.testing.assert_close(m2(x, aux, z, prev), m1(x, aux, z), rtol=0, atol=1e-6)


def test_ensemble_step_in_smaller_calls_gives_the_same_members() -> None:
    """``max_batch`` splits the folded members x batch into calls of at most that many samples (counted with a
    forward hook); each sample's output equals the one-call result up to float rounding, prev included."""
    torch.manual_seed(0)
    model = FCN3(preset("tiny", input_steps=2))
    x, aux, z = _inputs(model.config, batch=3)
    ens = torch.stack([x + 0.1 * e for e in range(4)])  # [4 members, 3, C, H, W]
    noise, prev = torch.stack([z * (e + 1) for e in range(4)]), ens - 0.05
    sizes: list[int] = []
    model.register_forward_hook(lambda m, args, out: sizes.append(args[0].shape[0]))
    with torch.no_grad():
        whole = ensemble_step(model, ens, aux, noise, prev)
        assert sizes == [12]
        for max_batch, calls in ((5, [5, 5, 2]), (1, [1] * 12), (12, [12]), (100, [12])):
            sizes.clear()
            part = ensemble_step(model, ens, aux, noise, prev, max_batch=max_batch)
            assert sizes == calls, max_batch
            torch.testing.assert_close(part, whole, rtol=0, atol=1e-5)
    assert (whole[1] - whole[0]).abs().max() > 1e-3  # members differ: a mix-up of chunks would show
    with pytest.raises(UsageError, match="max_batch must be >= 1"):
        ensemble_step(model, ens, aux, noise, prev, max_batch=0)


def test_two_step_misuse_and_state_dict() -> None:
    torch.manual_seed(0)
    m1, m2 = FCN3(preset("tiny")), FCN3(preset("tiny", input_steps=2))
    x, aux, z = _inputs(m1.config)
    with pytest.raises(UsageError, match="prev is required"):
        m2(x, aux, z)
    with pytest.raises(UsageError, match="input_steps=1"):
        m1(x, aux, z, x)
    with pytest.raises(UsageError, match="prev has shape"):
        m2(x, aux, z, x[:1])
    with pytest.raises(UsageError, match="prev has shape"):
        ensemble_step(m2, x.unsqueeze(0), aux, z.unsqueeze(0), x)
    for bad in (0, 3):
        with pytest.raises(UsageError, match="input_steps must be 1"):
            preset("tiny", input_steps=bad)
    # one-step models keep their state_dict keys (old checkpoints load); the scale is saved with two-step weights
    assert "tendency_scale" not in m1.state_dict()
    assert set(m2.state_dict()) == set(m1.state_dict()) | {"tendency_scale"}
    # ensemble_step folds each member's prev with its state
    ens, prev = x.unsqueeze(0).expand(2, *x.shape), torch.stack([x, x - 1.0])
    with torch.no_grad():
        out = ensemble_step(m2, ens, aux, z.unsqueeze(0).expand(2, *z.shape), prev)
        torch.testing.assert_close(out[1], m2(x, aux, z, x - 1.0), rtol=0, atol=1e-6)
