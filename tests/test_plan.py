"""Activation checkpointing (same numbers, less memory) and the memory planner (measured, validated off-fit)."""

import json
import subprocess
import sys

import pytest
import torch

from sciml.errors import UsageError
from sciml.forecasting.models import FCN3, ensemble_step, preset
from sciml.forecasting.plan import (
    ActivationModel,
    Layout,
    candidate_layouts,
    fit_activations,
    plan,
    saved_activation_bytes,
    scaled_config,
)
from sciml.units import parse_bytes


def _loss_and_grads(cfg, checkpoint_blocks: bool, dtype: torch.dtype):
    torch.manual_seed(0)
    model = FCN3(cfg, checkpoint_blocks=checkpoint_blocks).to(dtype)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 1, cfg.n_channels, cfg.nlat, cfg.nlon, generator=g, dtype=dtype)
    aux = torch.randn(1, cfg.n_aux, cfg.nlat, cfg.nlon, generator=g, dtype=dtype)
    z = torch.randn(2, 1, cfg.n_noise, cfg.nlat, cfg.nlon, generator=g, dtype=dtype)
    loss = (ensemble_step(model, x, aux, z) ** 2).mean()
    loss.backward()
    return loss.detach(), [p.grad.detach().clone() for p in model.parameters()]


def test_checkpointed_blocks_give_the_same_loss_and_gradients():
    # float32: the model computes its spherical layers in float32 whatever the input (no float64 model to test)
    cfg, dtype, tol = preset("tiny"), torch.float32, 1e-6
    loss0, grads0 = _loss_and_grads(cfg, False, dtype)
    loss1, grads1 = _loss_and_grads(cfg, True, dtype)
    assert abs(loss1 - loss0) <= tol * abs(loss0)
    for a, b in zip(grads0, grads1, strict=True):
        assert torch.linalg.vector_norm(a - b) <= tol * max(torch.linalg.vector_norm(a), 1e-30)


def test_checkpointing_halves_the_saved_activations_of_the_demo_model():
    cfg = preset("demo")
    full = saved_activation_bytes(cfg, checkpoint_blocks=False)
    ckpt = saved_activation_bytes(cfg, checkpoint_blocks=True)
    assert full >= 2.0 * ckpt, (full, ckpt)  # measured 42.1 MB vs 16.9 MB


def test_bf16_autocast_keeps_fewer_bytes():
    cfg = scaled_config(preset("demo"), 33, 64)
    assert saved_activation_bytes(cfg, precision="bf16") < saved_activation_bytes(cfg, precision="fp32")
    with pytest.raises(UsageError, match="precision"):
        saved_activation_bytes(cfg, precision="fp16")


@pytest.mark.parametrize("checkpoint_blocks", [False, True])
def test_activation_fit_predicts_held_out_grid_sizes_within_20_percent(checkpoint_blocks):
    cfg = preset("demo")
    model = fit_activations(cfg, [(17, 32), (33, 64)], checkpoint_blocks=checkpoint_blocks)
    for nlat, nlon in [(25, 48), (49, 96)]:  # not used by the fit
        measured = saved_activation_bytes(scaled_config(cfg, nlat, nlon), checkpoint_blocks)
        assert abs(model(nlat, nlon) - measured) <= 0.2 * measured, (nlat, nlon, model(nlat, nlon), measured)


def test_plan_recommends_the_smallest_spatial_split_that_fits():
    cfg = preset("demo")  # 657,552 parameters: 10.5 MB of weights, gradients and Adam state per rank
    act = ActivationModel(per_point=1000.0, constant=0.0, samples=())  # 8.2 MB per member-step at 64x128
    rows, best = plan(cfg, gpus=4, gpu_memory=0.1e9, activations=act, members=4, batch=1)
    assert {r.layout for r in rows} == set(candidate_layouts(4, 4, 1, 64, 128))
    assert best is not None and best.layout.h * best.layout.w == 1 and best.layout.ensemble == 4
    r = next(r for r in rows if r.layout == Layout(1, 1, 4, 1))
    assert r.activations == pytest.approx(1000.0 * 64 * 128)  # one member per rank, whole grid
    assert r.weights == 4 * 657_552 and r.adam == 8 * 657_552
    _, none_fits = plan(cfg, gpus=4, gpu_memory=1e6, activations=act, members=4, batch=1)
    assert none_fits is None


def test_parse_bytes():
    assert parse_bytes("80GB") == 80e9 and parse_bytes("141 GiB") == 141 * 2**30 and parse_bytes("1e9") == 1e9
    with pytest.raises(UsageError, match="write e.g. 80GB"):
        parse_bytes("lots")


def test_plan_command_json():
    cmd = [sys.executable, "-m", "sciml.cli", "forecast", "plan", "--preset", "tiny", "--gpus", "2"]
    proc = subprocess.run([*cmd, "--gpu-memory", "1GB", "--json"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["grid"] == [33, 64] and set(out["checkpointing"]) == {"none", "blocks"}
    none, blocks = out["checkpointing"]["none"], out["checkpointing"]["blocks"]
    assert blocks["activation_bytes_per_member_step"] < none["activation_bytes_per_member_step"]
    assert none["recommended"] is not None and len(none["layouts"]) >= 2
    bad = subprocess.run([*cmd, "--gpu-memory", "lots"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "80GB" in bad.stderr


def test_activation_measure_runs_a_two_step_model():
    """A two-step model takes the previous state too; its measured activations exceed the one-step model's (the
    tendency and the wider aux encoder input are kept for the backward pass)."""
    one = saved_activation_bytes(preset("tiny"))
    two = saved_activation_bytes(preset("tiny", input_steps=2))
    assert one < two < 1.5 * one
