"""Device, precision and activation checkpointing of training runs (``runtime`` section), on CPU.

What needs CUDA (NCCL, a real GPU's memory and speed) is in ``bench/gpu_check.py``, not here.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from sciml.config import ConfigError
from sciml.errors import UsageError
from sciml.forecasting.runtime import Runtime, RuntimeSection, parse_device_spec, resolve_device
from sciml.forecasting.train import Trainer, load_checkpoint, load_train_config


@pytest.fixture(scope="module")
def store(tiny_store: Path) -> Path:
    return tiny_store


def tiny_config(store: Path, **changes):
    over = {"data.store": str(store), "validation.samples": 2, "validation.every": 100}
    over.update(changes)
    return load_train_config("tiny", over)


# ------------------------------------------------------------------------------------------------ the section
def test_device_specs_and_their_errors() -> None:
    assert parse_device_spec("auto") == ("auto", None)
    assert parse_device_spec("cuda:3") == ("cuda", 3)
    with pytest.raises(UsageError, match="auto, cpu, cuda, cuda:N"):
        parse_device_spec("gpu")
    with pytest.raises(ValueError, match="loader_workers"):
        RuntimeSection(loader_workers=-1)
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")
        with pytest.raises(UsageError, match="CUDA is not available.*--device cpu"):
            resolve_device("cuda:0")


def test_unknown_runtime_key_and_deprecated_threads(tmp_path, caplog) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("runtime: {devise: cpu}\nstages: [{name: a, steps: 1}]\n")
    with pytest.raises(ConfigError, match="devise"):
        load_train_config(bad)
    old = tmp_path / "old.yaml"
    old.write_text("threads: 3\nstages: [{name: a, steps: 1}]\n")
    cfg = load_train_config(old)
    assert cfg.runtime.threads == 3 and cfg.threads is None
    assert "runtime: {threads: 3}" in caplog.text


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_cli_cuda_without_cuda_is_one_line_exit_2(store, tmp_path, capsys) -> None:
    from sciml.cli import main

    args = ["forecast", "train", "--config", "tiny", "--out", str(tmp_path / "r"), "--set", f"data.store={store}"]
    assert main([*args, "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "CUDA is not available" in err[0] and "--device cpu" in err[0]


# ------------------------------------------------------------------------------------------------ training
def _first_losses(cfg, out: Path, steps: int) -> list[float]:
    tr = Trainer(cfg, out)
    tr.run(max_steps=steps)
    return [r["loss"] for r in tr.log.train]


def test_explicit_cpu_and_auto_train_identically(store, tmp_path) -> None:
    if torch.cuda.is_available():
        pytest.skip("auto is CUDA here")
    a = _first_losses(tiny_config(store, **{"runtime.device": "cpu"}), tmp_path / "cpu", 3)
    b = _first_losses(tiny_config(store, **{"runtime.device": "auto"}), tmp_path / "auto", 3)
    assert a == b and all(math.isfinite(x) for x in a)


def test_bf16_trains_close_to_fp32_with_fp32_transforms(store, tmp_path) -> None:
    """bf16 autocast on CPU: finite, decreasing losses, the first within 2 % of fp32; the transforms see fp32."""
    from sciml.forecasting.models.layers import SerialSphereOps

    changes = {"stages.0.steps": 12, "stages.1.steps": 1, "stages.0.lr": 2e-3}
    fp32 = _first_losses(tiny_config(store, **changes), tmp_path / "fp32", 1)
    seen: list[torch.dtype] = []
    sht_types = tuple(type(m) for m in (SerialSphereOps().sht(33, 64, 16, 16, "equiangular"),))
    cfg = tiny_config(store, **changes, **{"runtime.precision": "bf16"})
    tr = Trainer(cfg, tmp_path / "bf16")
    hooks = [
        m.register_forward_hook(lambda mod, inp, out: seen.extend([inp[0].dtype, out.dtype]))
        for m in tr.model.modules()
        if isinstance(m, sht_types)
    ]
    assert hooks, "the model has no SHT to check"
    tr.run()
    bf16 = [r["loss"] for r in tr.log.train]
    assert all(math.isfinite(x) for x in bf16)
    assert abs(bf16[0] - fp32[0]) <= 0.02 * abs(fp32[0]), (bf16[0], fp32[0])
    first, last = sum(bf16[:3]) / 3, sum(bf16[-4:-1]) / 3  # stage 0's first and last steps
    assert last < 0.9 * first, bf16
    assert seen and set(seen) <= {torch.float32, torch.complex64}, set(seen)
    # the network did compute in bf16 somewhere (autocast was on): a linear layer's output
    lin = next(m for m in tr.model.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)))
    dtypes: list[torch.dtype] = []
    lin.register_forward_hook(lambda mod, inp, out: dtypes.append(out.dtype))
    tr.validate()
    assert torch.bfloat16 in dtypes


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-6)])
def test_block_checkpointing_gives_the_same_loss_and_gradients(store, tmp_path, dtype, tol) -> None:
    """``checkpointing: blocks`` recomputes blocks in the backward pass: same loss and gradients as ``none``."""
    grads = {}
    for mode in ("none", "blocks"):
        torch.manual_seed(0)
        tr = Trainer(tiny_config(store, **{"runtime.checkpointing": mode}), tmp_path / mode)
        tr.model.to(dtype)
        assert tr.model.checkpoint_blocks == (mode == "blocks")
        st = tr._enter_stage(0)
        batch = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in tr.batch(st, 0).items()}
        torch.manual_seed(1)
        st.noise.noise.to(dtype)
        loss = tr.forward_rollout(batch["input"], batch["aux"], 1, st.noise, batch["target"], st.loss.to(dtype))
        loss.backward()
        grads[mode] = (loss.detach(), [p.grad.detach().clone() for p in tr.model.parameters() if p.grad is not None])
    (l0, g0), (l1, g1) = grads["none"], grads["blocks"]
    assert abs(float(l0 - l1)) <= tol * abs(float(l0))
    assert len(g0) == len(g1) > 0
    scale = max(float(g.abs().max()) for g in g0)
    assert max(float((a - b).abs().max()) for a, b in zip(g0, g1, strict=True)) <= tol * scale


def test_run_json_records_device_precision_and_speed(store, tmp_path, capsys) -> None:
    from sciml.cli import main

    out = tmp_path / "cli"
    args = ["forecast", "train", "--config", "tiny", "--out", str(out), "--set", f"data.store={store}"]
    args += ["--set", "stages.0.steps=2", "--set", "stages.1.steps=1", "--device", "cpu", "--precision", "bf16"]
    assert main([*args, "--max-steps", "2"]) == 0
    run = json.loads((out / "run.json").read_text())["runtime"]
    assert run["device"] == "cpu" and run["device_name"] == "cpu" and run["precision"] == "bf16"
    assert run["steps_per_s"] > 0 and run["peak_device_memory_bytes"] is None  # CPU: torch does not track it
    # the checkpoint holds the resolved config: a resume may change the device and precision
    ck = load_checkpoint(out / "checkpoint.pt")
    assert ck["config"]["train"]["runtime"]["precision"] == "bf16"
    assert main([*args[:-2], "--precision", "fp32", "--resume"]) == 0
    assert load_checkpoint(out / "checkpoint.pt")["position"]["step"] == 3
    assert json.loads((out / "run.json").read_text())["runtime"]["precision"] == "fp32"


def test_runtime_describe_and_autocast_off_for_fp32() -> None:
    rt = Runtime(torch.device("cpu"))
    lin = torch.nn.Linear(2, 2)
    with rt.autocast():
        assert lin(torch.ones(1, 2)).dtype == torch.float32
    with Runtime(torch.device("cpu"), "bf16").autocast():
        assert lin(torch.ones(1, 2)).dtype == torch.bfloat16
    assert rt.describe()["device_name"] == "cpu" and rt.peak_memory_bytes() is None


def test_gpu_check_runs_on_cpu_at_a_small_size(tmp_path) -> None:
    """``bench/gpu_check.py`` is ready for a GPU: its model and transform sections run at 33 x 64 on CPU."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "bench" / "gpu_check.py"
    spec = importlib.util.spec_from_file_location("gpu_check", path)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "gpu_check.json"
    args = ["--device", "cpu", "--grid", "33x64", "--precision", "fp32", "--repeats", "1", "--warmup", "0"]
    assert bench.main([*args, "--skip", "demo", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    model, transforms = result["sections"]["model"], result["sections"]["transforms"]
    assert [r["case"].split(",")[0] for r in model] == [
        "fcn3 forward",
        "fcn3 forward+backward",
        "fcn3 1-step CRPS loss",
    ]
    assert all(r["s_per_step"] > 0 and r["grid"] == "33x64" for r in model)
    assert all(r["fields_per_s"] > 0 for r in transforms) and len(transforms) == 3
    assert "| model |" in bench.render(result)
