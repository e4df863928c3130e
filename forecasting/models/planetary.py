r"""The winds' degree-1 flow, advanced by a learned linear map instead of the network.

A tangent wind field :math:`\mathbf u` has six degree-1 modes: the solid-body rotations about the three axes
(toroidal :math:`l = 1`) and the three flows from one point of the sphere to its antipode (spheroidal
:math:`l = 1`). On the unit sphere, with latitude :math:`\varphi`, longitude :math:`\lambda` and
:math:`\mathbf e_k` the Cartesian axes, they are

.. math::

    \mathbf t_k = \mathbf e_k \times \hat r,\qquad \mathbf s_k = \mathbf e_k - (\mathbf e_k\cdot\hat r)\,\hat r,
    \qquad \langle \mathbf t_k, \mathbf t_j\rangle = \langle \mathbf s_k, \mathbf s_j\rangle
    = \tfrac23\,\delta_{kj},\quad \langle \mathbf t_k, \mathbf s_j\rangle = 0,

with :math:`\langle\cdot,\cdot\rangle` the spherical mean of the dot product; in eastward/northward components
:math:`\mathbf t_z = (\cos\varphi, 0)`, :math:`\mathbf t_x = (-\sin\varphi\cos\lambda, \sin\lambda)`,
:math:`\mathbf t_y = (-\sin\varphi\sin\lambda, -\cos\lambda)`, :math:`\mathbf s_z = (0, \cos\varphi)`,
:math:`\mathbf s_x = (-\sin\lambda, -\sin\varphi\cos\lambda)`, :math:`\mathbf s_y = (\cos\lambda,
-\sin\varphi\sin\lambda)`. A field's coefficients are :math:`T_k = \tfrac32\langle\mathbf u, \mathbf t_k\rangle`,
:math:`S_k = \tfrac32\langle\mathbf u, \mathbf s_k\rangle` (m/s: the speed of the mode at its equator).

Why: these modes hold the flow's relative angular momentum, which the dynamics change slowly and almost only
through the modes themselves (drag, the precession of a tilted rotation, the slow divergent exchange between the
hemispheres). On the built-in data a degree-1 coefficient one 6-hour step ahead is a linear function of its
present value to within 0.001-13 % of its variance (``bench/degree_one.py``). A network that predicts the next
state leaves them to a random walk of its small errors instead: the members' tilted rotation grew to 12-18 times
the truth's power in 5 days, though it was trained only on rollouts up to 1 day (``bench/quick_demo.md``). Here
the network's own degree-1 output is removed and replaced by

.. math::

    \begin{pmatrix} T'_z \\ S'_z \end{pmatrix} = N \begin{pmatrix} T_z \\ S_z \end{pmatrix},\qquad
    \begin{pmatrix} T'_x + i T'_y \\ S'_x + i S'_y \end{pmatrix}
        = M \begin{pmatrix} T_x + i T_y \\ S_x + i S_y \end{pmatrix},

:math:`N \in \mathbb R^{2\times 2}`, :math:`M \in \mathbb C^{2\times 2}`, learned per wind pair and initialised to
the identity (12 parameters per pair): the most general linear map that commutes with rotations about the polar
axis, as the dynamics on a rotating sphere do. Every other degree is the network's. The modes are evaluated in
physical units: the state is normalised per channel, so the module keeps each wind channel's mean and standard
deviation (buffers of the state dict, set by the trainer from the data statistics).

On latitude x longitude tiles the six inner products are sums over the whole sphere: each tile sums its part
and ``SphereOps.grid_sum`` adds them (a differentiable all-reduce over the spatial group).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from sciml.errors import UsageError
from sciml.forecasting.models.layers import SphereOps, at_least_fp32, no_autocast
from sciml.forecasting.sphere import check_vector_pairs, latitudes_deg, longitudes_deg, quadrature_weights

#: Mode order of the coefficient vector: rotations about x, y, z, then the divergent flows along x, y, z.
MODES = ("T_x", "T_y", "T_z", "S_x", "S_y", "S_z")


def degree_one_basis(lat_deg: torch.Tensor, lon_deg: torch.Tensor) -> torch.Tensor:
    """The six degree-1 modes in eastward/northward components, ``[6, 2, nlat, nlon]`` (order :data:`MODES`)."""
    phi = torch.deg2rad(lat_deg.to(torch.float64)).reshape(-1, 1)
    lam = torch.deg2rad(lon_deg.to(torch.float64)).reshape(1, -1)
    sp, cp, sl, cl = torch.sin(phi), torch.cos(phi), torch.sin(lam), torch.cos(lam)
    zero = torch.zeros_like(sp * sl)
    modes = [
        (-sp * cl, sl + zero),  # T_x
        (-sp * sl, -cl + zero),  # T_y
        (cp + zero, zero),  # T_z
        (-sl + zero, -sp * cl),  # S_x
        (cl + zero, -sp * sl),  # S_y
        (zero, cp + zero),  # S_z
    ]
    return torch.stack([torch.stack(m) for m in modes])


class DegreeOneFlow(nn.Module):
    """Replace the degree-1 flow of each wind pair of a step's output by a learned linear map of the input's.

    Parameters
    ----------
    pairs
        ``(eastward, northward)`` state channel indices, one per wind field.
    nlat, nlon
        The global equiangular I/O grid (both poles, latitude descending).
    ops
        The model's spherical primitives: this process's tile of the grid and the sum over the sphere.
    """

    mean: torch.Tensor
    std: torch.Tensor
    basis: torch.Tensor
    weights: torch.Tensor

    def __init__(self, pairs: Sequence[Sequence[int]], nlat: int, nlon: int, ops: SphereOps) -> None:
        super().__init__()
        self.pairs = check_vector_pairs(pairs)
        if not self.pairs:
            raise UsageError("DegreeOneFlow needs at least one (eastward, northward) channel pair")
        self.ops = ops
        lat, lon = ops.tile_slices((nlat, nlon))
        basis = degree_one_basis(latitudes_deg(nlat)[lat], longitudes_deg(nlon)[lon])
        # spherical mean = sum over the grid with these weights (Clenshaw-Curtis; exact for these modes' products)
        q = quadrature_weights(nlat, nlon)[lat].expand(-1, basis.shape[-1])
        self.register_buffer("basis", basis.float(), persistent=False)
        self.register_buffer("weights", q.float(), persistent=False)
        n = len(self.pairs)
        eye = torch.eye(2).expand(n, 2, 2).clone()
        self.axial = nn.Parameter(eye.clone())  # N: (T_z, S_z) -> (T_z', S_z')
        self.equatorial = nn.Parameter(torch.stack([eye, torch.zeros_like(eye)], dim=-1))  # M as (real, imag)
        # the wind channels' normalisation (physical = std * normalised + mean); set from the data statistics
        self.register_buffer("mean", torch.zeros(n, 2))
        self.register_buffer("std", torch.ones(n, 2))
        self._channels = [c for pair in self.pairs for c in pair]

    def set_normalisation(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Take the wind channels' mean and standard deviation from per-channel ``[C]`` tensors."""
        idx = torch.tensor(self._channels)
        with torch.no_grad():
            self.mean.copy_(torch.as_tensor(mean, dtype=torch.float32)[idx].reshape(-1, 2))
            self.std.copy_(torch.as_tensor(std, dtype=torch.float32)[idx].reshape(-1, 2))

    def coefficients(self, winds: torch.Tensor) -> torch.Tensor:
        """Degree-1 coefficients ``[B, P, 6]`` (m/s, order :data:`MODES`) of physical winds ``[B, P, 2, H, W]``."""
        partial = torch.einsum("bpcij,kcij,ij->bpk", winds, self.basis.to(winds.dtype), self.weights.to(winds.dtype))
        return 1.5 * self.ops.grid_sum(partial)

    def advance(self, c: torch.Tensor) -> torch.Tensor:
        """The learned map of coefficients ``[B, P, 6]`` (see the module docstring)."""
        n = self.axial.to(c.dtype)
        axial = torch.einsum("pij,bpj->bpi", n, c[..., [2, 5]])
        m = torch.view_as_complex(self.equatorial.to(c.dtype).contiguous())
        eq = torch.complex(c[..., [0, 3]], c[..., [1, 4]])  # (T_x + i T_y, S_x + i S_y)
        eq = torch.einsum("pij,bpj->bpi", m, eq)
        return torch.stack(
            [eq[..., 0].real, eq[..., 0].imag, axial[..., 0], eq[..., 1].real, eq[..., 1].imag, axial[..., 1]], dim=-1
        )

    def physical(self, x: torch.Tensor) -> torch.Tensor:
        """The wind pairs of a normalised state ``[B, C, H, W]`` in physical units, ``[B, P, 2, H, W]``."""
        w = x[:, self._channels].reshape(x.shape[0], len(self.pairs), 2, *x.shape[-2:])
        return w * self.std[..., None, None].to(w.dtype) + self.mean[..., None, None].to(w.dtype)

    def forward(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """The network's next state ``out`` with each pair's degree-1 flow advanced from the current state ``x``
        (both normalised ``[B, C, H, W]``)."""
        dtype = out.dtype
        with no_autocast(out):
            x32, out32 = at_least_fp32(x), at_least_fp32(out)
            target = self.advance(self.coefficients(self.physical(x32)))
            delta = target - self.coefficients(self.physical(out32))  # [B, P, 6]
            fix = torch.einsum("bpk,kcij->bpcij", delta, self.basis.to(delta.dtype))
            fix = fix / self.std[..., None, None].to(delta.dtype)
            fixed = out32.clone()
            fixed[:, self._channels] = out32[:, self._channels] + fix.reshape(out.shape[0], -1, *out.shape[-2:])
        return fixed.to(dtype)
