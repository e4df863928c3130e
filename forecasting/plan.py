r"""Memory planning for training on GPUs: what one rank holds, for candidate parallel layouts.

Per rank of a ``h x w x ensemble x batch`` layout (every weight is replicated, tiles split the grid):

.. math::

    M = \underbrace{4P}_{\text{weights}} + \underbrace{4P}_{\text{gradients}} + \underbrace{8P}_{\text{Adam}}
        + \frac{E}{e}\,\frac{B}{b}\,K\,\frac{A(N)}{h\,w} + \frac{B}{b}\,\frac{(1 + K)\,C\,N\cdot 4}{h\,w},

with :math:`P` parameters, :math:`E` members, :math:`B` samples, a :math:`K`-step rollout, :math:`C` channels and
:math:`N = n_\mathrm{lat} n_\mathrm{lon}` grid points; :math:`A(N)` are the activation bytes one member keeps for
one rollout step. :math:`A` is *measured*, not guessed: :func:`saved_activation_bytes` runs a real forward pass of
the model at reduced grid sizes (same channels and widths) and counts, through ``saved_tensors_hooks``, the bytes
of every tensor autograd keeps for the backward pass (plus the block inputs that activation checkpointing keeps);
:func:`fit_activations` fits :math:`A(N) = a N + c` by least squares. The fit is validated at grid sizes it did not
see (tests: within 20 %). Tiles divide activations by :math:`h w` up to halo rows, which this estimate leaves out.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from sciml.errors import UsageError
from sciml.forecasting.models import FCN3, FCN3Config, count_parameters, ensemble_step
from sciml.units import parse_bytes  # noqa: F401  (re-exported for the planner's callers)

#: Reduced grid sizes used to fit the activation model (internal grid = half of each, as in the presets).
FIT_SIZES: tuple[tuple[int, int], ...] = ((17, 32), (33, 64))
PRECISIONS = ("fp32", "bf16")
#: Fraction of a GPU's memory a plan may use (the rest: CUDA context, allocator fragmentation, NCCL buffers).
HEADROOM = 0.85


def scaled_config(cfg: FCN3Config, nlat: int, nlon: int) -> FCN3Config:
    """``cfg`` on an ``nlat x nlon`` grid, every width and channel count unchanged."""
    return dataclasses.replace(cfg, nlat=nlat, nlon=nlon)


def saved_activation_bytes(
    cfg: FCN3Config, checkpoint_blocks: bool = False, precision: str = "fp32", seed: int = 0
) -> int:
    """Bytes autograd keeps after one forward step of one member of ``FCN3(cfg)`` (float32 weights).

    Counts each storage once; weights and buffers are left out (they are counted as parameters). With
    ``checkpoint_blocks`` the processor blocks keep only their inputs, which are counted too. ``precision="bf16"``
    runs the forward under CPU autocast in bfloat16, as training does on GPUs.
    """
    if precision not in PRECISIONS:
        raise UsageError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    torch.manual_seed(seed)
    model = FCN3(cfg, checkpoint_blocks=checkpoint_blocks)
    own = {t.untyped_storage().data_ptr() for t in itertools.chain(model.parameters(), model.buffers())}
    kept: dict[int, int] = {}

    def keep(t: torch.Tensor) -> None:
        storage = t.untyped_storage()
        if storage.data_ptr() not in own:
            kept[storage.data_ptr()] = storage.nbytes()

    def pack(t: torch.Tensor) -> torch.Tensor:
        keep(t)
        return t

    def block_input(module: torch.nn.Module, args: tuple) -> None:
        for a in args:
            if torch.is_tensor(a):
                keep(a)

    hooks = [b.register_forward_pre_hook(block_input) for b in model.blocks] if checkpoint_blocks else []
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 1, cfg.n_channels, cfg.nlat, cfg.nlon, generator=g)
    aux = torch.randn(1, cfg.n_aux, cfg.nlat, cfg.nlon, generator=g) if cfg.n_aux else None
    z = torch.randn(1, 1, cfg.n_noise, cfg.nlat, cfg.nlon, generator=g) if cfg.n_noise else None
    prev = torch.randn(x.shape, generator=g) if cfg.input_steps == 2 else None  # a two-step model's previous state
    try:
        with (
            torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"),
            torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t),
        ):
            out = ensemble_step(model, x, aux, z, prev)
    finally:
        for h in hooks:
            h.remove()
    del out
    return int(sum(kept.values()))


@dataclass(frozen=True)
class ActivationModel:
    """:math:`A(N) = a N + c` bytes per member and rollout step, fitted on ``samples`` (nlat, nlon, bytes)."""

    per_point: float
    constant: float
    samples: tuple[tuple[int, int, int], ...]

    def __call__(self, nlat: int, nlon: int) -> float:
        return max(self.per_point * nlat * nlon + self.constant, 0.0)


def fit_activations(
    cfg: FCN3Config,
    sizes: Sequence[tuple[int, int]] = FIT_SIZES,
    checkpoint_blocks: bool = False,
    precision: str = "fp32",
) -> ActivationModel:
    """Measure :func:`saved_activation_bytes` of ``cfg`` at the reduced ``sizes`` and fit :math:`a N + c`."""
    if len(sizes) < 2:
        raise UsageError("fitting the activation model needs at least two grid sizes")
    samples = tuple(
        (nlat, nlon, saved_activation_bytes(scaled_config(cfg, nlat, nlon), checkpoint_blocks, precision))
        for nlat, nlon in sizes
    )
    n = np.array([s[0] * s[1] for s in samples], dtype=np.float64)
    a = np.array([s[2] for s in samples], dtype=np.float64)
    (slope, const), *_ = np.linalg.lstsq(np.stack([n, np.ones_like(n)], axis=1), a, rcond=None)
    return ActivationModel(float(slope), float(const), samples)


@dataclass(frozen=True)
class Layout:
    """A parallel layout: latitude x longitude tiles, ensemble ranks and data (batch) ranks."""

    h: int
    w: int
    ensemble: int
    batch: int

    @property
    def ranks(self) -> int:
        return self.h * self.w * self.ensemble * self.batch


@dataclass(frozen=True)
class RankMemory:
    """Bytes one rank holds in a training step, by kind."""

    layout: Layout
    weights: float
    gradients: float
    adam: float
    activations: float
    loader: float

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.adam + self.activations + self.loader


def rank_memory(
    cfg: FCN3Config,
    layout: Layout,
    activations: ActivationModel,
    parameters: int,
    members: int,
    batch: int,
    rollout: int,
) -> RankMemory:
    """Per-rank memory of one training step (module docstring)."""
    tiles = layout.h * layout.w
    per_rank_members = members / layout.ensemble
    per_rank_batch = batch / layout.batch
    act = per_rank_members * per_rank_batch * rollout * activations(cfg.nlat, cfg.nlon) / tiles
    loader = per_rank_batch * (1 + rollout) * cfg.n_channels * cfg.nlat * cfg.nlon * 4 / tiles
    return RankMemory(layout, 4.0 * parameters, 4.0 * parameters, 8.0 * parameters, act, loader)


def candidate_layouts(gpus: int, members: int, batch: int, nlat: int, nlon: int) -> list[Layout]:
    """Every ``h x w x e x b = gpus`` split with ``e | members``, ``b | batch`` and tiles of >= 8 rows/columns."""
    out = []
    for h, w, e in itertools.product(range(1, gpus + 1), repeat=3):
        if gpus % (h * w * e):
            continue
        b = gpus // (h * w * e)
        if members % e or batch % b or nlat // h < 8 or nlon // w < 8:
            continue
        out.append(Layout(h, w, e, b))
    return out


def plan(
    cfg: FCN3Config,
    gpus: int,
    gpu_memory: float,
    activations: ActivationModel,
    members: int = 2,
    batch: int = 1,
    rollout: int = 1,
) -> tuple[list[RankMemory], RankMemory | None]:
    """Per-rank memory of every candidate layout and the recommendation: the smallest spatial split that fits
    (``HEADROOM`` of ``gpu_memory``), then the fewest ensemble ranks (members stay together), or ``None``."""
    if gpus < 1 or gpu_memory <= 0:
        raise UsageError(f"need at least one GPU with memory > 0, got {gpus} GPUs of {gpu_memory:g} bytes")
    parameters = parameter_count(cfg)
    rows = [
        rank_memory(cfg, lay, activations, parameters, members, batch, rollout)
        for lay in candidate_layouts(gpus, members, batch, cfg.nlat, cfg.nlon)
    ]
    fits = [r for r in rows if r.total <= HEADROOM * gpu_memory]
    best = min(fits, key=lambda r: (r.layout.h * r.layout.w, r.layout.ensemble, r.layout.h), default=None)
    return rows, best


def parameter_count(cfg: FCN3Config) -> int:
    """Parameters of ``FCN3(cfg)``, counted on the ``meta`` device (no memory, any grid size)."""
    with torch.device("meta"):
        return count_parameters(FCN3(cfg))
