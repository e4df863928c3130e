"""The one place that imports DeepXDE and touches its global settings.

DeepXDE picks its backend from ``DDE_BACKEND`` at import time (otherwise it writes ``~/.deepxde/config.json``),
takes ~3 s to import, keeps its float precision in a module global, and on a GPU machine switches torch's
default device to CUDA on import. So: the import is lazy, the backend is forced to PyTorch, torch's default
device is restored after the import, and the float precision is set right before each network is built (we do
*not* call ``dde.config.set_default_float``, which would change ``torch``'s default dtype for the whole process).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from typing import Any

import numpy as np

LOGGER = logging.getLogger(__name__)
_DDE: Any = None


def dde() -> Any:
    """The ``deepxde`` module, imported on first use with the PyTorch backend."""
    global _DDE
    if _DDE is None:
        import torch

        os.environ["DDE_BACKEND"] = "pytorch"
        device = torch.get_default_device()
        dtype = torch.get_default_dtype()
        root = logging.getLogger()
        level = root.level
        # deepxde prints a backend banner on import ("Using backend: pytorch / Other supported backends ..."):
        # that is its business, not our user's, so it goes to the debug log.
        banner = io.StringIO()
        with contextlib.redirect_stderr(banner):
            import deepxde
        if banner.getvalue().strip():
            LOGGER.debug("deepxde: %s", " / ".join(banner.getvalue().split("\n")).strip(" /"))

        # deepxde moves the default to CUDA when it sees a GPU. Restore only on change: setting a default
        # device installs a TorchFunctionMode that slows every torch call down (~2x on these small nets).
        if torch.get_default_device() != device:
            torch.set_default_device(None if device.type == "cpu" else device)
        if torch.get_default_dtype() != dtype:
            torch.set_default_dtype(dtype)
        root.setLevel(level)
        _DDE = deepxde
    return _DDE


def torch_dtype(name: str) -> Any:
    import torch

    return {"float64": torch.float64, "float32": torch.float32}[name]


def set_precision(name: str) -> None:
    """Precision of the networks DeepXDE builds next (its module-global ``config.real``)."""
    real = dde().config.real
    (real.set_float64 if name == "float64" else real.set_float32)()


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (DeepXDE's ``set_random_seed``; also makes torch deterministic)."""
    dde().config.set_random_seed(seed)


def make_net(layers: list[int], activation: str, initializer: str, dtype: str, parallel: bool) -> Any:
    """A DeepXDE ``FNN`` (or ``PFNN``: one sub-network per output) in the given precision."""
    d = dde()
    set_precision(dtype)
    n_out = layers[-1]
    if parallel and n_out > 1:
        return d.nn.PFNN([layers[0], *[[h] * n_out for h in layers[1:-1]], n_out], activation, initializer)
    return d.nn.FNN(layers, activation, initializer)


def sample_points(a: float, b: float, n: int, distribution: str, dtype: str) -> np.ndarray:
    """``n`` points in ``[a, b]`` (column vector): Chebyshev-Gauss-Lobatto or a DeepXDE sampler."""
    if distribution == "chebyshev":
        t = -np.cos(np.pi * np.arange(n) / (n - 1))
        x = 0.5 * (a + b) + 0.5 * (b - a) * t
        return x[:, None].astype(dtype)
    d = dde()
    set_precision(dtype)
    geom = d.geometry.Interval(a, b)
    if distribution == "uniform":
        return geom.uniform_points(n, boundary=True).astype(dtype)
    return geom.random_points(n, random=distribution).astype(dtype)


def output_layer_names(net: Any) -> list[str]:
    """Names (as in ``named_parameters()``) of the output layer's weights and biases of an FNN or PFNN."""
    if hasattr(net, "linears"):
        prefix = f"linears.{len(net.linears) - 1}."
    else:
        prefix = f"layers.{len(net.layers) - 1}."
    return [k for k, _ in net.named_parameters() if k.startswith(prefix)]


def first_layers(net: Any) -> list[Any]:
    """The ``torch.nn.Linear`` input layer(s) of an FNN (one) or a PFNN (one per sub-network, or one shared)."""
    import torch

    if hasattr(net, "linears"):
        return [net.linears[0]]
    first = net.layers[0]
    return list(first) if isinstance(first, torch.nn.ModuleList) else [first]
