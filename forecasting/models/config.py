"""Configuration of the FCN3-style spherical neural operator, with the ``tiny``, ``demo`` and ``fcn3`` presets.

Channel layout of the state tensor ``[B, C, H, W]`` (the FCN3 order): the ``n_surface`` surface channels first,
then the atmospheric channels variable-major, ``var0@lev0, var0@lev1, ..., var1@lev0, ...``, so that
``C = n_surface + n_atmo_vars * n_levels``. Auxiliary inputs (static fields and time features, ``n_aux``
channels) and latent noise (``n_noise`` channels) are separate inputs on the same grid. A model with
``input_steps=2`` also takes the previous state ``[B, C, H, W]`` (one model step earlier); its scaled tendency
enters through the aux encoder too, as ``C`` more channels.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from sciml.errors import UsageError


@dataclass(frozen=True)
class FCN3Config:
    """Hyper-parameters of :class:`~sciml.forecasting.models.FCN3`.

    Attributes
    ----------
    nlat, nlon : int
        I/O grid (equiangular with both poles, latitude 90 -> -90).
    scale_factor : int
        Internal grid is ``(nlat // scale_factor, nlon // scale_factor)`` on ``internal_grid``.
    n_levels, n_atmo_vars, n_surface : int
        Channel groups of the state (see the module docstring for the order).
    n_aux, n_noise : int
        Auxiliary (static + time) channels and latent-noise channels; both feed the aux encoder.
    atmo_embed_dim, surf_embed_dim, aux_embed_dim : int
        Embedding width per pressure level, for the surface group and for the aux group. The processor width is
        ``n_levels * atmo_embed_dim + surf_embed_dim``; each block sees that plus ``aux_embed_dim`` channels.
    num_layers, global_block_frequency : int
        Block ``i`` is global (spherical-harmonic convolution) when ``i % global_block_frequency == 0``, otherwise
        local (DISCO convolution).
    mlp_ratio : float
        Hidden width of the block MLP relative to its input width.
    kernel_shape, basis_type, basis_norm_mode :
        DISCO filter basis (FCN3: 3x3 Morlet, ``mean`` normalisation -> 9 basis functions).
    layer_scale_init : float
        Initial LayerScale value.
    clamp_channels : tuple of int
        State channels passed through the soft clamp (non-negative quantities such as humidity).
    internal_grid : str
        ``legendre-gauss`` (FCN3) or ``equiangular``.
    residual : bool
        Predict the increment, :math:`u_{n+1} = u_n + F_\\theta(u_n, a_n, z_n)` (as GraphCast and GenCast do),
        instead of the next state (FCN3). Persistence is then the network's zero output. (On the demo data it
        did not help: ``bench/forecast_variants.yaml``, ``floor-3e-3-z1-noise-fine-residual``.)
    input_steps : int
        States the network sees: 1 (FCN3), or 2, when it also sees the state one step earlier through its scaled
        tendency, :math:`u_{n+1} = F_\\theta(u_n, (u_n - u_{n-1})\\,s, a_n, z_n)` (GraphCast takes two input
        frames): the last tendency reveals what one state cannot, such as an unobserved forcing with memory. The
        aux encoder then takes ``n_channels`` more inputs; :math:`s` is the model's ``tendency_scale`` buffer.
    degree_one_pairs : tuple of (int, int)
        ``(eastward, northward)`` wind channel pairs whose degree-1 flow (the solid-body rotations and the divergent
        flows across the sphere) the network does not predict: it advances by a learned linear map of its present
        value (:mod:`sciml.forecasting.models.planetary`), so that it cannot random-walk. Empty: the network
        predicts every degree (FCN3). Training configs name the pairs (``model.degree_one_winds``).
    """

    nlat: int = 33
    nlon: int = 64
    scale_factor: int = 2
    n_levels: int = 2
    n_atmo_vars: int = 2
    n_surface: int = 2
    n_aux: int = 1
    n_noise: int = 2
    atmo_embed_dim: int = 4
    surf_embed_dim: int = 4
    aux_embed_dim: int = 4
    num_layers: int = 4
    global_block_frequency: int = 2
    mlp_ratio: float = 2.0
    kernel_shape: tuple[int, int] = (3, 3)
    basis_type: Literal["morlet", "piecewise linear", "zernike"] = "morlet"
    basis_norm_mode: Literal["mean", "nodal", "none"] = "mean"
    layer_scale_init: float = 0.1
    clamp_channels: tuple[int, ...] = ()
    internal_grid: Literal["legendre-gauss", "equiangular"] = "legendre-gauss"
    residual: bool = False
    input_steps: int = 1
    degree_one_pairs: tuple[tuple[int, int], ...] = ()

    def __post_init__(self) -> None:
        positive = ("nlat", "nlon", "scale_factor", "n_levels", "n_atmo_vars", "atmo_embed_dim", "num_layers")
        for name in positive:
            if getattr(self, name) < 1:
                raise UsageError(f"FCN3Config.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("n_surface", "n_aux", "n_noise", "surf_embed_dim", "aux_embed_dim"):
            if getattr(self, name) < 0:
                raise UsageError(f"FCN3Config.{name} must be >= 0, got {getattr(self, name)}")
        if self.n_surface > 0 and self.surf_embed_dim < 1:
            raise UsageError("FCN3Config.surf_embed_dim must be >= 1 when n_surface > 0")
        if self.n_aux + self.n_noise > 0 and self.aux_embed_dim < 1:
            raise UsageError("FCN3Config.aux_embed_dim must be >= 1 when there are aux or noise channels")
        if self.global_block_frequency < 1:
            raise UsageError(f"FCN3Config.global_block_frequency must be >= 1, got {self.global_block_frequency}")
        if self.mlp_ratio <= 0:
            raise UsageError(f"FCN3Config.mlp_ratio must be > 0, got {self.mlp_ratio}")
        h, w = self.internal_shape
        if h < 4 or w < 4:
            raise UsageError(
                f"internal grid {h}x{w} is too small: lower scale_factor ({self.scale_factor}) or enlarge the grid"
            )
        if self.nlon % w != 0:
            raise UsageError(
                f"nlon={self.nlon} must be a multiple of the internal nlon={w} (DISCO needs an integer ratio); "
                "pick scale_factor dividing nlon"
            )
        if self.input_steps not in (1, 2):
            raise UsageError(
                f"FCN3Config.input_steps must be 1 (the current state) or 2 (also the previous one), got "
                f"{self.input_steps}"
            )
        if self.input_steps == 2 and self.aux_embed_dim < 1:
            raise UsageError("FCN3Config.aux_embed_dim must be >= 1 when input_steps is 2 (the tendency enters there)")
        pairs = [tuple(p) for p in self.degree_one_pairs]
        flat = [c for p in pairs for c in p]
        in_range = all(0 <= c < self.n_channels for c in flat)
        if any(len(p) != 2 for p in pairs) or len(set(flat)) != len(flat) or not in_range:
            raise UsageError(
                f"FCN3Config.degree_one_pairs must be distinct (eastward, northward) pairs of the {self.n_channels} "
                f"state channels, got {list(self.degree_one_pairs)}"
            )
        if set(flat) & set(self.clamp_channels):
            raise UsageError("a wind channel of degree_one_pairs cannot also be clamped (clamp_channels)")
        bad = [c for c in self.clamp_channels if not 0 <= c < self.n_channels]
        if bad:
            raise UsageError(f"clamp_channels {bad} are outside the {self.n_channels} state channels")

    @property
    def n_channels(self) -> int:
        """Number of state channels ``C``."""
        return self.n_surface + self.n_atmo_vars * self.n_levels

    @property
    def n_aux_in(self) -> int:
        """Input channels of the aux encoder: aux, noise and (``input_steps=2``) the tendency of every channel."""
        return self.n_aux + self.n_noise + (self.n_channels if self.input_steps == 2 else 0)

    @property
    def internal_shape(self) -> tuple[int, int]:
        """Internal grid ``(h, w)``."""
        return self.nlat // self.scale_factor, self.nlon // self.scale_factor

    @property
    def embed_dim(self) -> int:
        """Processor width ``n_levels * atmo_embed_dim + surf_embed_dim`` (641 for FCN3)."""
        return self.n_levels * self.atmo_embed_dim + (self.surf_embed_dim if self.n_surface > 0 else 0)

    @property
    def block_in_dim(self) -> int:
        """Block input width: processor width plus the aux embedding (677 for FCN3)."""
        return self.embed_dim + (self.aux_embed_dim if self.n_aux_in > 0 else 0)

    def is_global_block(self, i: int) -> bool:
        """Whether block ``i`` is a global (spectral) block."""
        return i % self.global_block_frequency == 0


def _tiny() -> FCN3Config:
    return FCN3Config()


def _demo() -> FCN3Config:
    # One "level" of shallow-water fields (geopotential-like height, u, v) as on the built-in dataset.
    return FCN3Config(
        nlat=64,
        nlon=128,
        scale_factor=2,
        n_levels=1,
        n_atmo_vars=3,
        n_surface=0,
        n_aux=2,
        n_noise=4,
        atmo_embed_dim=48,
        surf_embed_dim=0,
        aux_embed_dim=16,
        num_layers=4,
        global_block_frequency=2,
    )


def _fcn3() -> FCN3Config:
    # makani config/fourcastnet3.yaml: 7 surface + 5 vars x 13 levels = 72 channels; aux = cos zenith, orography,
    # land-sea mask (2 channels) + 8 diffusion-noise channels; q (last 13 channels) and tcwv (index 6) are clamped.
    n_surface, n_levels = 7, 13
    q_start = n_surface + 4 * n_levels
    return FCN3Config(
        nlat=721,
        nlon=1440,
        scale_factor=2,
        n_levels=n_levels,
        n_atmo_vars=5,
        n_surface=n_surface,
        n_aux=4,
        n_noise=8,
        atmo_embed_dim=45,
        surf_embed_dim=56,
        aux_embed_dim=36,
        num_layers=10,
        global_block_frequency=5,
        clamp_channels=(6, *range(q_start, q_start + n_levels)),
    )


PRESETS = {"tiny": _tiny, "demo": _demo, "fcn3": _fcn3}

#: FCN3's published parameter count (NGC model card), reproduced by the ``fcn3`` preset.
FCN3_PUBLISHED_PARAMETERS = 710_867_670


def preset(name: str, **overrides: Any) -> FCN3Config:
    """Return preset ``name`` (``tiny``, ``demo``, ``fcn3``) with optional field overrides."""
    if name not in PRESETS:
        raise UsageError(f"unknown model preset {name!r}; choose one of {sorted(PRESETS)}")
    cfg = PRESETS[name]()
    if overrides:
        fields = {f.name for f in dataclasses.fields(FCN3Config)}
        unknown = sorted(set(overrides) - fields)
        if unknown:
            raise UsageError(f"unknown FCN3Config field(s) {unknown}; valid: {sorted(fields)}")
        cfg = dataclasses.replace(cfg, **overrides)
    return cfg
