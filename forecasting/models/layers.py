"""Building blocks of the FCN3-style network: DISCO encoder/decoder, spectral (Driscoll-Healy) convolution,
block MLP, LayerScale and the neural-operator block.

Every spherical primitive (SHT, DISCO convolution, bilinear resampling) is created through a
:class:`SphereOps` object. :class:`SerialSphereOps` uses ``torch_harmonics``; a distributed twin can hand out
``torch_harmonics.distributed`` layers instead, so the blocks below never name a concrete implementation.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn as nn
import torch_harmonics as th
from torch import amp


def cutoff_radius(nlat: int, kernel_shape: tuple[int, int]) -> float:
    r"""FCN3's DISCO support radius :math:`\theta_c = (k_0 + 1)\,\tfrac12\,\pi/(n_\mathrm{lat} - 1)` (Morlet basis)."""
    return (kernel_shape[0] + 1) * 0.5 * math.pi / float(nlat - 1)


def soft_clamp(x: torch.Tensor) -> torch.Tensor:
    r"""Smooth non-negative clamp used for water channels.

    .. math::

        s(x) = \begin{cases} 0 & x \le 0 \\ x^2 & 0 < x < \tfrac12 \\ x - \tfrac14 & x \ge \tfrac12 \end{cases}

    which is :math:`C^1` at 0 and 1/2 (value and slope match), unlike a ReLU.
    """
    y = torch.where(x > 0.0, x * x, torch.zeros_like(x))
    return torch.where(x >= 0.5, x - 0.25, y)


def no_autocast(x: torch.Tensor) -> amp.autocast:
    """Autocast disabled for ``x``'s device type (meta and other exotic devices fall back to ``cpu``)."""
    return amp.autocast(device_type="cuda" if x.is_cuda else "cpu", enabled=False)


def at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float32 when it is in a lower precision (bf16 under autocast); float32/float64 unchanged."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def _on_meta_device() -> bool:
    return torch.empty(0).device.type == "meta"


def _refuse_forward(module: nn.Module, args: tuple) -> None:
    raise RuntimeError(
        "this layer was built on the meta device with a stand-in geometry (only parameter shapes are real); "
        "build the model on a real device to run it"
    )


@dataclass(frozen=True)
class DiscoSpec:
    """Everything a DISCO convolution needs besides its channels and grid shapes (torch-harmonics' keywords)."""

    kernel_shape: tuple[int, int]
    basis_type: str
    basis_norm_mode: str
    groups: int
    grid_in: str
    grid_out: str
    theta_cutoff: float

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``DiscreteContinuousConvS2`` (serial or distributed), without a bias."""
        return {**dataclasses.asdict(self), "bias": False}


class SphereOps(Protocol):
    """Factory of spherical primitives (serial or distributed)."""

    def sht(self, nlat: int, nlon: int, lmax: int, mmax: int, grid: str) -> nn.Module: ...

    def isht(self, nlat: int, nlon: int, lmax: int, mmax: int, grid: str) -> nn.Module: ...

    def disco(
        self,
        in_channels: int,
        out_channels: int,
        in_shape: tuple[int, int],
        out_shape: tuple[int, int],
        spec: DiscoSpec,
    ) -> nn.Module: ...

    def resample(
        self, in_shape: tuple[int, int], out_shape: tuple[int, int], grid_in: str, grid_out: str
    ) -> nn.Module: ...

    def spectral_conv(self, sht: nn.Module, isht: nn.Module, in_channels: int, out_channels: int) -> nn.Module: ...

    def local_shape(self, shape: tuple[int, int]) -> tuple[int, int]:
        """Shape of the part of a global ``(nlat, nlon)`` field this process holds (the whole field serially)."""
        ...

    def tile_slices(self, shape: tuple[int, int]) -> tuple[slice, slice]:
        """Latitude and longitude index ranges of that part within the global grid."""
        ...

    def grid_sum(self, partial: torch.Tensor) -> torch.Tensor:
        """The sum over the whole grid of per-process partial sums (differentiable; the value itself serially)."""
        ...


class SerialSphereOps:
    """Single-process primitives from ``torch_harmonics``.

    On the ``meta`` device the DISCO and resampling geometry (sparse tensors whose size depends on the data)
    cannot be built; since their parameter shapes do not depend on the grid, a small stand-in grid is used
    there and the layer refuses to run. This lets the 711M-parameter ``fcn3`` preset be counted without memory.
    """

    def sht(self, nlat: int, nlon: int, lmax: int, mmax: int, grid: str) -> nn.Module:
        return th.RealSHT(nlat, nlon, lmax=lmax, mmax=mmax, grid=grid, norm="ortho").float()

    def isht(self, nlat: int, nlon: int, lmax: int, mmax: int, grid: str) -> nn.Module:
        return th.InverseRealSHT(nlat, nlon, lmax=lmax, mmax=mmax, grid=grid, norm="ortho").float()

    def disco(
        self,
        in_channels: int,
        out_channels: int,
        in_shape: tuple[int, int],
        out_shape: tuple[int, int],
        spec: DiscoSpec,
    ) -> nn.Module:
        kwargs = spec.kwargs()
        if not _on_meta_device():
            with warnings.catch_warnings():
                # 0.9.3 renames "morlet" to "harmonic" but keeps "morlet" as FCN3's unnormalised variant
                warnings.filterwarnings(
                    "ignore", message=".*'morlet' basis type is deprecated", category=DeprecationWarning
                )
                return th.DiscreteContinuousConvS2(
                    in_channels, out_channels, in_shape=in_shape, out_shape=out_shape, **kwargs
                )
        with torch.device("cpu"), warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message=".*'morlet' basis type is deprecated", category=DeprecationWarning
            )
            # the stand-in grid's own geometry: only the parameter shapes matter on the meta device
            geometry = {k: v for k, v in kwargs.items() if k not in ("grid_in", "grid_out", "theta_cutoff")}
            conv = th.DiscreteContinuousConvS2(
                in_channels, out_channels, in_shape=(9, 16), out_shape=(9, 16), **geometry
            )
        conv = conv.to("meta")
        conv.register_forward_pre_hook(_refuse_forward)
        return conv

    def resample(self, in_shape: tuple[int, int], out_shape: tuple[int, int], grid_in: str, grid_out: str) -> nn.Module:
        if not _on_meta_device():
            return th.ResampleS2(*in_shape, *out_shape, grid_in=grid_in, grid_out=grid_out, mode="bilinear")
        stand_in = nn.Identity()
        stand_in.register_forward_pre_hook(_refuse_forward)
        return stand_in

    def spectral_conv(self, sht: nn.Module, isht: nn.Module, in_channels: int, out_channels: int) -> nn.Module:
        return SpectralConvDH(sht, isht, in_channels, out_channels)

    def local_shape(self, shape: tuple[int, int]) -> tuple[int, int]:
        return shape[0], shape[1]

    def tile_slices(self, shape: tuple[int, int]) -> tuple[slice, slice]:
        return slice(0, shape[0]), slice(0, shape[1])

    def grid_sum(self, partial: torch.Tensor) -> torch.Tensor:
        return partial


class _FP32(nn.Module):
    """Run ``inner`` in float32 with autocast off (spherical transforms lose too much in bf16), cast back."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        with no_autocast(x):
            return self.inner(at_least_fp32(x)).to(dtype)


class DiscoEncoder(nn.Module):
    """Grouped DISCO convolution from the I/O grid to the internal grid (no bias), run in float32."""

    def __init__(
        self,
        ops: SphereOps,
        in_channels: int,
        out_channels: int,
        in_shape: tuple[int, int],
        out_shape: tuple[int, int],
        *,
        grid_in: str,
        grid_out: str,
        kernel_shape: tuple[int, int],
        basis_type: str,
        basis_norm_mode: str,
    ) -> None:
        super().__init__()
        spec = DiscoSpec(
            kernel_shape=kernel_shape,
            basis_type=basis_type,
            basis_norm_mode=basis_norm_mode,
            groups=math.gcd(in_channels, out_channels),
            grid_in=grid_in,
            grid_out=grid_out,
            theta_cutoff=cutoff_radius(in_shape[0], kernel_shape),
        )
        conv = ops.disco(in_channels, out_channels, in_shape, out_shape, spec)
        self.conv = _FP32(conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class DiscoDecoder(DiscoEncoder):
    """Bilinear resampling from the internal grid to the I/O grid, then a grouped DISCO convolution there.

    The convolution is a :class:`DiscoEncoder` from the I/O grid to itself (same filter basis and cutoff rule).
    """

    def __init__(
        self,
        ops: SphereOps,
        in_channels: int,
        out_channels: int,
        in_shape: tuple[int, int],
        out_shape: tuple[int, int],
        *,
        grid_in: str,
        grid_out: str,
        **disco: Any,
    ) -> None:
        super().__init__(
            ops, in_channels, out_channels, out_shape, out_shape, grid_in=grid_out, grid_out=grid_out, **disco
        )
        self.upsample = _FP32(ops.resample(in_shape, out_shape, grid_in, grid_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.upsample(x))


class SpectralConvDH(nn.Module):
    r"""Isotropic (Driscoll-Healy) spectral convolution on the sphere.

    .. math::

        \hat y_{o,lm} = \sum_i w_{i o l}\, \hat x_{i,lm}, \qquad y = \mathrm{SHT}^{-1}(\hat y),\;
        \hat x = \mathrm{SHT}(x),

    with one complex weight per (input, output, degree ``l``) and none per order ``m``: a zonal kernel, hence
    equivariant to all rotations of the sphere (in particular to longitude shifts). The complex weight is stored
    as a real tensor ``[in, out, lmax, 2]`` so that optimisers, gradient all-reduces and parameter counts see
    real numbers (FCN3 counts each complex weight as two parameters).
    """

    def __init__(self, sht: nn.Module, isht: nn.Module, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.sht = sht
        self.isht = isht
        lmax = int(isht.lmax)  # type: ignore[arg-type]  # torch-harmonics transforms keep lmax as an int
        # Variance-preserving init: E|w|^2 = 1/in; degree 0 only has the real m=0 mode, so give it sqrt(2) more.
        scale = torch.full((lmax,), math.sqrt(1.0 / in_channels))
        scale[0] *= math.sqrt(2.0)
        w = torch.randn(in_channels, out_channels, lmax, 2) * (scale[:, None] / math.sqrt(2.0))
        self.weight = nn.Parameter(w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        with no_autocast(x):
            coeffs = self.sht(at_least_fp32(x))
            w = torch.view_as_complex(at_least_fp32(self.weight).contiguous())
            coeffs = torch.einsum("bilm,iol->bolm", coeffs, w)
            y = self.isht(coeffs)
        return y.to(dtype)


class MLP(nn.Module):
    """Pointwise two-layer perceptron ``Conv1x1 -> GELU -> Conv1x1`` (with biases, as in FCN3)."""

    def __init__(self, in_channels: int, hidden_channels: int, out_channels: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(in_channels, hidden_channels, 1, bias=True)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden_channels, out_channels, 1, bias=True)
        nn.init.normal_(self.fc1.weight, std=math.sqrt(2.0 / in_channels))
        nn.init.zeros_(self.fc1.bias)  # type: ignore[arg-type]  # created with bias=True
        nn.init.normal_(self.fc2.weight, std=math.sqrt(1.0 / hidden_channels))
        nn.init.zeros_(self.fc2.bias)  # type: ignore[arg-type]  # created with bias=True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class LayerScale(nn.Module):
    r"""Learnable per-channel scale :math:`y_c = \gamma_c x_c`, initialised small to keep early blocks near identity."""

    def __init__(self, channels: int, init_value: float = 0.1) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), float(init_value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight[:, None, None].to(x.dtype)


class NeuralOperatorBlock(nn.Module):
    r"""One processor block.

    .. math::

        x_{\mathrm{out}} = x_{[:C_\mathrm{out}]} + \gamma \odot \mathrm{MLP}(K x),

    where :math:`x` has the processor channels plus the aux embedding, :math:`K` is the global spectral
    convolution or a local DISCO convolution (both width-preserving), and the identity skip keeps only the
    first :math:`C_\mathrm{out}` (processor) channels. No normalisation layer, no bias in :math:`K`.
    """

    def __init__(self, conv: nn.Module, in_channels: int, out_channels: int, mlp_ratio: float, layer_scale_init: float):
        super().__init__()
        self.conv = conv
        self.mlp = MLP(in_channels, int(mlp_ratio * in_channels), out_channels)
        self.layer_scale = LayerScale(out_channels, layer_scale_init)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dx = self.layer_scale(self.mlp(self.conv(x)))
        return x[:, : self.out_channels] + dx
