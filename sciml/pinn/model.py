"""Network + trainable scalars, and the named loss terms of a problem.

Each loss term :math:`i` has a residual vector :math:`r_i` and the unweighted loss
:math:`L_i = \\operatorname{mean}(r_i^2)`; the training loss is :math:`\\sum_i \\lambda_i L_i`. Terms:

* ``residual`` (``residual[eq]`` for systems): the ODE, multiplied through, on the collocation points
  (which include the fixed singular points);
* ``regularity@x=...``: the same residual (or the problem's own relation) exactly at each singular point;
* the problem's soft conditions, under their own names.

Two evaluators produce the same residuals: :meth:`PinnModel.terms` (batched, derivatives by reverse-mode
autograd; used by Adam/L-BFGS) and :meth:`PinnModel.functional_terms` (point by point under
``torch.func.vmap`` with forward-mode derivatives; differentiable with ``jacrev`` for the Levenberg-Marquardt
Jacobian). The tests check that they agree.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch.func import functional_call, jacfwd, jacrev, vmap

from sciml.pinn import _dde
from sciml.pinn.config import NetworkConfig
from sciml.pinn.problem import AbstractProblem

Tensor = torch.Tensor


class _BatchSolution:
    """``Solution`` on a batch ``x`` of shape ``(n,)``: derivatives by repeated ``autograd.grad``."""

    def __init__(self, problem: AbstractProblem, x: Tensor, out: Tensor) -> None:
        self.problem, self.x, self.out = problem, x, out
        self._cache: dict[tuple[int, int], Tensor] = {}

    def __call__(self, c: int | str = 0) -> Tensor:
        return self.out[:, self.problem.output_index(c)]

    def d(self, c: int | str = 0, k: int = 1) -> Tensor:
        c = self.problem.output_index(c)
        if k == 0:
            return self(c)
        if (c, k) not in self._cache:
            lower = self.d(c, k - 1)
            (g,) = torch.autograd.grad(lower, self.x, torch.ones_like(lower), create_graph=True)
            self._cache[(c, k)] = g
        return self._cache[(c, k)]


class _PointSolution:
    """``Solution`` at one scalar ``x``: derivatives by nested forward-mode ``jacfwd`` (vmap/jacrev friendly)."""

    def __init__(self, problem: AbstractProblem, f: Callable[[Tensor], Tensor], x: Tensor) -> None:
        self.problem, self.f, self.x = problem, f, x
        self._cache: dict[int, Tensor] = {}

    def _order(self, k: int) -> Tensor:
        if k not in self._cache:
            g = self.f
            for _ in range(k):
                g = jacfwd(g)
            self._cache[k] = g(self.x)
        return self._cache[k]

    def __call__(self, c: int | str = 0) -> Tensor:
        return self._order(0)[self.problem.output_index(c)]

    def d(self, c: int | str = 0, k: int = 1) -> Tensor:
        return self._order(k)[self.problem.output_index(c)]


class PinnModel(torch.nn.Module):
    """Trial solution :math:`y(x) = T(x, N(\\xi(x)), u)` with :math:`\\xi = (2x - a - b)/(b - a) \\in [-1, 1]`.

    ``N`` is a DeepXDE network, ``T`` the problem's hard-condition transform and ``u`` its trainable scalars.
    """

    def __init__(self, problem: AbstractProblem, network: NetworkConfig, dtype: str) -> None:
        super().__init__()
        self.problem = problem
        self.dtype_name = dtype
        a, b = problem.domain()
        self.a, self.b = float(a), float(b)
        n_out = len(problem.outputs)
        self.net = _dde.make_net(
            [1, *network.hidden, n_out], network.activation, network.initializer, dtype, network.parallel
        )
        if network.first_layer == "chebyshev":
            for layer in _dde.first_layers(self.net):
                chebyshev_first_layer(layer, network.first_layer_slope)
        center, half = 0.5 * (self.a + self.b), 0.5 * (self.b - self.a)
        self.net.apply_feature_transform(lambda x: (x - center) / half)
        tdtype = _dde.torch_dtype(dtype)
        self.u = torch.nn.ParameterDict(
            {q.name: torch.nn.Parameter(torch.tensor(float(q.initial), dtype=tdtype)) for q in problem.unknowns()}
        )

    @property
    def tdtype(self) -> torch.dtype:
        return _dde.torch_dtype(self.dtype_name)

    def unknown_values(self) -> dict[str, Tensor]:
        return {k: v for k, v in self.u.items()}

    def forward(self, x: Tensor) -> Tensor:
        """``x`` of shape ``(n,)`` (or a 0-d tensor) -> outputs ``(n, n_out)`` (or ``(n_out,)``)."""
        scalar = x.dim() == 0
        xb = x.reshape(-1, 1)
        out = self.problem.trial(xb[:, 0:1], self.net(xb), self.unknown_values())
        out = torch.as_tensor(out).reshape(xb.shape[0], -1)
        return out[0] if scalar else out

    # -- term definitions ----------------------------------------------------------------------------
    def term_names(self) -> list[str]:
        eqs = self.problem.equations
        names = ["residual"] if len(eqs) == 1 else [f"residual[{e}]" for e in eqs]
        names += [s.term_name() for s in self.problem.singularities()]
        names += [c.name for c in self.problem.conditions()]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.problem.name}: loss term names are not unique: {names}")
        return names

    def _point_terms(self, solution_at: Callable[[Tensor], Any], u: Mapping[str, Tensor]) -> list[Tensor]:
        """Residuals of the singular points and conditions (each a 1-d tensor)."""
        out = []
        for s in self.problem.singularities():
            x = _location(s.x, u, self.tdtype)
            y = solution_at(x)
            vals = s.func(x, y, u) if s.func is not None else self.problem.residual(x, y, u)
            out.append(_flat(vals))
        for c in self.problem.conditions():
            x = _location(c.x, u, self.tdtype)
            out.append(_flat(c.func(x, solution_at(x), u)))
        return out

    def terms(self, x: Tensor) -> dict[str, Tensor]:
        """Residual vector of every term, batched autograd (``x``: collocation points, shape ``(n,)``)."""
        u = self.unknown_values()
        xg = x.detach().clone().requires_grad_(True)
        sol = _BatchSolution(self.problem, xg, self(xg))
        res = self.problem.residual(xg, sol, u)
        vecs = [torch.as_tensor(r).reshape(-1) for r in res]

        def solution_at(xp: Tensor) -> _ScalarView:
            xp = xp.reshape(1)
            if not xp.requires_grad:
                xp = xp.detach().clone().requires_grad_(True)
            return _ScalarView(_BatchSolution(self.problem, xp, self(xp)))

        vecs += self._point_terms(solution_at, u)
        return dict(zip(self.term_names(), vecs, strict=True))

    def functional_terms(self, params: Mapping[str, Tensor], x: Tensor) -> dict[str, Tensor]:
        """Same residual vectors as :meth:`terms`, as a pure function of ``params`` (for ``jacrev``)."""
        u = {k[2:]: v for k, v in params.items() if k.startswith("u.")}

        def f(xs: Tensor) -> Tensor:
            return functional_call(self, dict(params), (xs,))

        def point(xs: Tensor) -> Tensor:
            return _flat(self.problem.residual(xs, _PointSolution(self.problem, f, xs), u))

        res = vmap(point)(x)  # (n, n_eq)
        vecs = [res[:, i] for i in range(res.shape[1])]
        vecs += self._point_terms(lambda xs: _PointSolution(self.problem, f, xs.reshape(())), u)
        return dict(zip(self.term_names(), vecs, strict=True))

    def jacobians(self, params: Mapping[str, Tensor], x: Tensor) -> dict[str, Tensor]:
        """:math:`\\partial r_i / \\partial\\theta` for every term, each of shape ``(n_i, n_params)``.

        The collocation residual is differentiated point by point (``vmap(jacrev(...))``, ~3x faster here than
        ``jacrev`` of the batched function); the few point terms with ``jacrev`` directly. Parameters are
        flattened in ``named_parameters()`` order.
        """
        keys = list(params)

        def point(p: Mapping[str, Tensor], xs: Tensor) -> Tensor:
            u = {k[2:]: v for k, v in p.items() if k.startswith("u.")}

            def f(z: Tensor) -> Tensor:
                return functional_call(self, dict(p), (z,))

            return _flat(self.problem.residual(xs, _PointSolution(self.problem, f, xs), u))

        def flat(jd: Mapping[str, Tensor], n: int) -> Tensor:
            return torch.cat([jd[k].reshape(n, -1) for k in keys], 1)

        jd = vmap(jacrev(point), in_dims=(None, 0))(params, x)  # param -> (n, n_eq, *shape)
        n, n_eq = x.shape[0], len(self.problem.equations)
        full = flat({k: v.reshape(n * n_eq, *v.shape[2:]) for k, v in jd.items()}, n * n_eq).reshape(n, n_eq, -1)
        mats = [full[:, i, :] for i in range(n_eq)]

        def point_terms(p: Mapping[str, Tensor]) -> tuple[Tensor, ...]:
            u = {k[2:]: v for k, v in p.items() if k.startswith("u.")}

            def f(z: Tensor) -> Tensor:
                return functional_call(self, dict(p), (z,))

            return tuple(self._point_terms(lambda xs: _PointSolution(self.problem, f, xs.reshape(())), u))

        names = self.term_names()
        if len(names) > n_eq:
            for jp in jacrev(point_terms)(params):
                m = next(iter(jp.values())).shape[0]
                mats.append(flat(jp, m))
        return dict(zip(names, mats, strict=True))

    def predict(self, x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self(torch.as_tensor(x, dtype=self.tdtype)).cpu().numpy()

    def residual_on(self, x: np.ndarray) -> np.ndarray:
        """ODE residual (multiplied through) on ``x``: shape ``(n, n_eq)``."""
        xg = torch.as_tensor(x, dtype=self.tdtype).clone().requires_grad_(True)
        sol = _BatchSolution(self.problem, xg, self(xg))
        res = self.problem.residual(xg, sol, self.unknown_values())
        return torch.stack([torch.as_tensor(r).reshape(-1) for r in res], 1).detach().cpu().numpy()


def chebyshev_first_layer(layer: torch.nn.Linear, slope: float) -> None:
    r"""Set a ``Linear(1, n)`` input layer so that unit :math:`j` is :math:`\tanh(\sigma_j s (\xi - c_j)/\Delta_j)`.

    :math:`c_j = -\cos(\pi (j + 1/2)/n)` are Chebyshev points of :math:`[-1, 1]` (the mapped domain),
    :math:`\Delta_j = \pi\sqrt{1 - c_j^2}/n + \pi^2/(2n^2)` their local spacing (the second term caps the
    slope at the ends), :math:`s` = ``slope`` and :math:`\sigma_j = \pm 1` alternating. Deterministic: the seed
    still sets every other layer.
    """
    n = layer.weight.shape[0]
    c = -np.cos(np.pi * (np.arange(n) + 0.5) / n)
    spacing = np.pi * np.sqrt(1.0 - c**2) / n + np.pi**2 / (2.0 * n**2)
    w = slope / spacing * np.where(np.arange(n) % 2 == 0, 1.0, -1.0)
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(w, dtype=layer.weight.dtype).reshape(layer.weight.shape))
        layer.bias.copy_(torch.as_tensor(-w * c, dtype=layer.bias.dtype))


class _ScalarView:
    """A batch-of-one solution seen as scalars (so point terms have the same shapes in both evaluators)."""

    def __init__(self, inner: _BatchSolution) -> None:
        self.inner = inner

    def __call__(self, c: int | str = 0) -> Tensor:
        return self.inner(c)[0]

    def d(self, c: int | str = 0, k: int = 1) -> Tensor:
        return self.inner.d(c, k)[0]


def _location(x: Any, u: Mapping[str, Tensor], dtype: torch.dtype) -> Tensor:
    if callable(x):
        return torch.as_tensor(x(u), dtype=dtype).reshape(())
    return torch.tensor(float(x), dtype=dtype)


def _flat(vals: Any) -> Tensor:
    if isinstance(vals, (tuple, list)):
        return torch.stack([torch.as_tensor(v).reshape(()) for v in vals]).reshape(-1)
    return torch.as_tensor(vals).reshape(-1)
