"""Multi-process tests of distributed forecasting against the serial code (gloo, CPU, one thread per rank).

One 4-rank job (forked, so ranks start in milliseconds) runs every check layout after layout and rank 0 writes
the errors, all-reduced (MAX) over the world so every rank agrees on the verdict, to a JSON file; the tests below
read it. Layouts on 4 ranks: 2x2 tiles; 2x1 and 1x2 tiles (x 2 batch ranks); 2 latitude x 2 ensemble ranks;
2 latitude x 2 batch ranks. The grid is 33 x 64 (uneven latitude split 17/16) and the internal grid 16 x 32.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch_harmonics as th
import torch_harmonics.distributed as thd

from sciml.forecasting.checkpoint import load_checkpoint, save_checkpoint
from sciml.forecasting.data import (
    PRESETS as DATA_PRESETS,
)
from sciml.forecasting.data import (
    DataConfig,
    ForecastDataset,
    compute_stats,
    simulate,
    source_from_dataset,
    stats_path,
    write_store,
)
from sciml.forecasting.distributed.comm import (
    all_max,
    gather_tiles,
    local_tile,
    max_replica_difference,
    sync_gradients,
)
from sciml.forecasting.distributed.context import ParallelConfig, init_parallel
from sciml.forecasting.distributed.crps import (
    DistributedGridCRPSLoss,
    DistributedSpectralCRPSLoss,
    distributed_loss,
)
from sciml.forecasting.distributed.hooks import DistributedTrainHooks
from sciml.forecasting.distributed.noise import TiledEnsembleNoise
from sciml.forecasting.distributed.ops import DistributedSphereOps, local_degree_slice, local_order_slice
from sciml.forecasting.distributed.spawn import run_local
from sciml.forecasting.distributed.trainer import TiledTrainer
from sciml.forecasting.losses import FairCRPS, GridCRPSLoss, SpectralCRPSLoss, StandardCRPS, fcn3_loss
from sciml.forecasting.models import FCN3, preset
from sciml.forecasting.noise import DiffusionNoiseS2, EnsembleNoise, heat_kernel_kT
from sciml.forecasting.train import Trainer, load_train_config

pytestmark = pytest.mark.distributed

NLAT, NLON = 33, 64  # uneven: 17 + 16 latitude rows on 2 polar ranks
LAYOUTS = {"2x2": dict(h=2, w=2), "2x1": dict(h=2), "1x2": dict(w=2)}
TIMEOUT_S = 60.0  # collective timeout inside the job


def _err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach() - b.detach()).abs().max())


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return _err(a, b) / max(float(b.detach().abs().max()), 1e-30)


class _Recorder:
    """Collects named errors; each value is all-reduced (MAX) over the world before it is recorded."""

    def __init__(self, ctx):
        self.world = ctx.group("world")
        self.rank = ctx.rank
        self.values: dict[str, float] = {}

    def __call__(self, name: str, value: float) -> None:
        self.values[name] = all_max(value, self.world)


# ------------------------------------------------------------------ layer twins (float64 and float32)


def _compare_tiled(rec: _Recorder, serial, distributed, xin, tin, tout, g, name: str, grad: str, sfx: str) -> None:
    """Record forward and input-gradient errors of a distributed layer on its tile against the serial layer."""
    xs = xin.clone().requires_grad_(True)
    xd = local_tile(xin, tin).requires_grad_(True)
    ys, yd = serial(xs), distributed(xd)
    rec(f"{name}/fwd/{sfx}", _err(yd, local_tile(ys, tout)))
    wy = torch.randn(ys.shape, generator=g, dtype=ys.dtype)
    (ys * wy).sum().backward()
    (yd * local_tile(wy, tout)).sum().backward()
    rec(f"{name}/{grad}/{sfx}", _rel(xd.grad, local_tile(xs.grad, tin)))


def _check_layers(rec: _Recorder, ctx, tag: str, dtype: torch.dtype) -> None:
    tile = ctx.tile(NLAT, NLON)
    g = torch.Generator().manual_seed(7)
    x = torch.randn(2, 3, NLAT, NLON, generator=g, dtype=dtype)
    xl = local_tile(x, tile)
    sfx = f"{tag}/{str(dtype).split('.')[-1]}"
    lmax, mmax = (NLAT + 1) // 2, NLON // 2 + 1

    # forward SHT: coefficients split l over h, m over w
    sht = th.RealSHT(NLAT, NLON, lmax=lmax, mmax=mmax, grid="equiangular").to(dtype)
    dsht = thd.DistributedRealSHT(NLAT, NLON, lmax=lmax, mmax=mmax, grid="equiangular").to(dtype)
    xs = x.clone().requires_grad_(True)
    xd = xl.clone().requires_grad_(True)
    cs, cd = sht(xs), dsht(xd)
    lsl, msl = local_degree_slice(dsht.lmax, ctx), local_order_slice(dsht.mmax, ctx)  # after truncation
    rec(f"sht/fwd/{sfx}", _err(torch.view_as_real(cd), torch.view_as_real(cs[..., lsl, msl])))
    wgt = torch.randn(cs.shape, generator=g, dtype=dtype)
    (torch.view_as_real(cs).sum(-1) * wgt).sum().backward()
    (torch.view_as_real(cd).sum(-1) * wgt[..., lsl, msl]).sum().backward()
    rec(f"sht/grad/{sfx}", _rel(xd.grad, local_tile(xs.grad, tile)))

    # inverse SHT from the local coefficient block
    isht = th.InverseRealSHT(NLAT, NLON, lmax=lmax, mmax=mmax, grid="equiangular").to(dtype)
    disht = thd.DistributedInverseRealSHT(NLAT, NLON, lmax=lmax, mmax=mmax, grid="equiangular").to(dtype)
    coeffs = sht(x).detach()
    cs_ = coeffs.clone().requires_grad_(True)
    cd_ = coeffs[..., lsl, msl].clone().requires_grad_(True)
    ys, yd = isht(cs_), disht(cd_)
    rec(f"isht/fwd/{sfx}", _err(yd, local_tile(ys, tile)))
    wy = torch.randn(ys.shape, generator=g, dtype=dtype)
    (ys * wy).sum().backward()
    (yd * local_tile(wy, tile)).sum().backward()
    rec(f"isht/grad/{sfx}", _rel(torch.view_as_real(cd_.grad), torch.view_as_real(cs_.grad[..., lsl, msl])))

    # DISCO: equiangular 33x64 -> Legendre-Gauss 16x32 (encoder-like) and 16x32 -> 16x32 (processor-like)
    cases = {
        "disco_enc": ((NLAT, NLON), (16, 32), "equiangular", "legendre-gauss", 2.0 * math.pi / (NLAT - 1)),
        "disco_loc": ((16, 32), (16, 32), "legendre-gauss", "legendre-gauss", 4.0 * math.pi / 15),
    }
    for name, (shp_in, shp_out, gi, go, cutoff) in cases.items():
        kw = dict(kernel_shape=(3, 3), basis_type="morlet", basis_norm_mode="mean", groups=1, bias=False)
        torch.manual_seed(3)
        conv = th.DiscreteContinuousConvS2(
            3, 5, shp_in, shp_out, grid_in=gi, grid_out=go, theta_cutoff=cutoff, **kw
        ).to(dtype)
        dconv = thd.DistributedDiscreteContinuousConvS2(
            3, 5, shp_in, shp_out, grid_in=gi, grid_out=go, theta_cutoff=cutoff, **kw
        ).to(dtype)
        dconv.load_state_dict(conv.state_dict())
        xin = torch.randn(2, 3, *shp_in, generator=g, dtype=dtype)
        _compare_tiled(rec, conv, dconv, xin, ctx.tile(*shp_in), ctx.tile(*shp_out), g, name, "grad_x", sfx)
        dw = dconv.weight.grad.clone()
        dist.all_reduce(dw, group=ctx.spatial.handle)  # shared weight: SUM over the spatial ranks
        rec(f"{name}/grad_w/{sfx}", _rel(dw, conv.weight.grad))

    # bilinear resampling Legendre-Gauss 16x32 -> equiangular 33x64 (decoder)
    res = th.ResampleS2(16, 32, NLAT, NLON, grid_in="legendre-gauss", grid_out="equiangular").to(dtype)
    dres = thd.DistributedResampleS2(16, 32, NLAT, NLON, grid_in="legendre-gauss", grid_out="equiangular").to(dtype)
    xin = torch.randn(2, 3, 16, 32, generator=g, dtype=dtype)
    _compare_tiled(rec, res, dres, xin, ctx.tile(16, 32), tile, g, "resample", "grad", sfx)

    # quadrature (all-reduce over the spatial group)
    q = th.QuadratureS2((NLAT, NLON), grid="equiangular", normalize=True).to(dtype)
    dq = thd.DistributedQuadratureS2((NLAT, NLON), grid="equiangular", normalize=True).to(dtype)
    rec(f"quadrature/fwd/{sfx}", _err(dq(xl), q(x)))


# ------------------------------------------------------------------ the model


def _model_inputs(cfg, batch: int, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, cfg.n_channels, cfg.nlat, cfg.nlon, generator=g)
    aux = torch.randn(batch, cfg.n_aux, cfg.nlat, cfg.nlon, generator=g)
    z = torch.randn(batch, cfg.n_noise, cfg.nlat, cfg.nlon, generator=g)
    return x, aux, z


def _check_model(rec: _Recorder, ctx, tag: str) -> None:
    _check_model_config(rec, ctx, tag, "model", preset("tiny"))
    # the degree-1 wind map sums over the whole sphere: each tile's part, all-reduced (a random map and units)
    _check_model_config(rec, ctx, tag, "model-degree-one", preset("tiny", degree_one_pairs=((2, 4),)))


def _check_model_config(rec: _Recorder, ctx, tag: str, name: str, cfg) -> None:
    torch.manual_seed(0)
    serial = FCN3(cfg)
    if serial.degree_one is not None:
        with torch.no_grad():
            serial.degree_one.axial.add_(0.3 * torch.randn(serial.degree_one.axial.shape))
            serial.degree_one.equatorial.add_(0.3 * torch.randn(serial.degree_one.equatorial.shape))
        serial.degree_one.set_normalisation(torch.linspace(-1.0, 2.0, cfg.n_channels), torch.linspace(0.5, 3.0, 6))
    model = FCN3(cfg, DistributedSphereOps(ctx))
    # same parameter names and shapes: the serial state dict loads as is (layout-independent checkpoints)
    model.load_state_dict(serial.state_dict())
    tile = ctx.tile(cfg.nlat, cfg.nlon)
    x, aux, z = _model_inputs(cfg, batch=2)
    ys = serial(x, aux, z)
    xl = local_tile(x, tile).requires_grad_(True)
    yl = model(xl, local_tile(aux, tile), local_tile(z, tile))
    rec(f"{name}/fwd/{tag}", _err(gather_tiles(yl, ctx, cfg.nlat, cfg.nlon), ys))
    wy = torch.randn(ys.shape, generator=torch.Generator().manual_seed(5))
    xs = x.requires_grad_(True)
    ys = serial(xs, aux, z)
    (ys * wy).sum().backward()
    (yl * local_tile(wy, tile)).sum().backward()
    rec(f"{name}/grad_x/{tag}", _rel(gather_tiles(xl.grad, ctx, cfg.nlat, cfg.nlon), xs.grad))
    # data ranks hold the same sample here, so their average is the same gradient
    sync_gradients(model.parameters(), ctx)
    worst = max(_rel(p.grad, q.grad) for p, q in zip(model.parameters(), serial.parameters(), strict=True))
    rec(f"{name}/grad_w/{tag}", worst)


# ------------------------------------------------------------------ ensemble-parallel CRPS and noise


def _check_crps(rec: _Recorder, ctx, tag: str) -> None:
    members, batch, chans = 4, 2, 3
    g = torch.Generator().manual_seed(11)
    fc = torch.randn(members, batch, chans, NLAT, NLON, generator=g, dtype=torch.float64)
    obs = torch.randn(batch, chans, NLAT, NLON, generator=g, dtype=torch.float64)
    e_r = members // ctx.mesh.ensemble
    b_r = batch // ctx.mesh.batch
    mem = slice(ctx.coords.ensemble * e_r, (ctx.coords.ensemble + 1) * e_r)
    rows = slice(ctx.coords.batch * b_r, (ctx.coords.batch + 1) * b_r)
    tile = ctx.tile(NLAT, NLON)
    weights = [0.5, 0.3, 0.2]
    lmax = (NLAT + 1) // 2
    degrees = {"degree_weights": torch.rand(chans, lmax, generator=g) + 0.5}  # per channel and degree
    # a wind pair (u = channel 2, v = channel 0: not adjacent, not in order) through the vector SHT, weights per mode
    vectors = {"degree_weights": torch.rand(chans, lmax, lmax, generator=g) + 0.5, "vector_pairs": [(2, 0)]}
    for kname, kernel in (("fair", FairCRPS()), ("standard", StandardCRPS())):
        for lname, ser_cls, dist_cls, dtype, extra in (
            ("grid", GridCRPSLoss, DistributedGridCRPSLoss, torch.float64, {}),
            ("spectral", SpectralCRPSLoss, DistributedSpectralCRPSLoss, torch.float32, {}),
            ("spectral-degrees", SpectralCRPSLoss, DistributedSpectralCRPSLoss, torch.float32, degrees),
            ("spectral-vectors", SpectralCRPSLoss, DistributedSpectralCRPSLoss, torch.float32, vectors),
        ):
            serial = ser_cls(NLAT, NLON, kernel, channel_weights=weights, **extra)
            # twins are built from the serial loss and must carry this rank's weights and the pairs over
            dloss = distributed_loss(serial, ctx) if extra else dist_cls(serial, ctx)
            fs = fc.to(dtype).clone().requires_grad_(True)
            fd = local_tile(fc.to(dtype)[mem, rows], tile).requires_grad_(True)
            ls = serial(fs, obs.to(dtype))
            ld = dloss(fd, local_tile(obs.to(dtype)[rows], tile))
            rec(f"crps/{lname}/{kname}/value/{tag}", abs(ld.item() - ls.item()) / abs(ls.item()))
            ls.backward()
            ld.backward()
            # d(global loss)/d(local forecast) = the rank's local gradient divided by the data-group size
            got = fd.grad / ctx.data.size
            rec(f"crps/{lname}/{kname}/grad/{tag}", _rel(got, local_tile(fs.grad[mem, rows], tile)))


def _check_noise(rec: _Recorder, ctx, tag: str) -> None:
    noise = DiffusionNoiseS2(NLAT, NLON, [heat_kernel_kT(800.0), heat_kernel_kT(3200.0)])
    serial = EnsembleNoise(noise, members=4, seed=333)
    tiled = TiledEnsembleNoise(noise, members=4, global_batch=2, seed=333, ctx=ctx)
    s_state, d_state = serial.initial(2), tiled.initial()
    s_state, d_state = serial.step(s_state), tiled.step(d_state)
    full = serial.to_grid(s_state)[tiled.member_indices][:, tiled.rows]
    rec(f"noise/tile/{tag}", _err(tiled.to_grid(d_state), local_tile(full, ctx.tile(NLAT, NLON))))


# ------------------------------------------------------------------ optimiser steps, checkpoints


def _train(model, cfg, ctx, steps: int, members: int, batch: int, tiled: bool, record=None):
    """Adam on the fair grid CRPS of an ensemble forecast; ``tiled``: the model runs on ``ctx``'s tiles."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.95))
    noise = DiffusionNoiseS2(cfg.nlat, cfg.nlon, [heat_kernel_kT(1600.0)] * cfg.n_noise)
    if tiled:
        ens = TiledEnsembleNoise(noise, members, batch, seed=333, ctx=ctx)
        loss_fn = DistributedGridCRPSLoss(GridCRPSLoss(cfg.nlat, cfg.nlon, FairCRPS()), ctx)
        rows = ens.rows
        tile = ctx.tile(cfg.nlat, cfg.nlon)
    else:
        ens = EnsembleNoise(noise, members, seed=333)
        loss_fn = GridCRPSLoss(cfg.nlat, cfg.nlon, FairCRPS())
        rows = slice(None)
    for step in range(steps):
        x, aux, _ = _model_inputs(cfg, batch, seed=100 + step)
        target = torch.randn(batch, cfg.n_channels, cfg.nlat, cfg.nlon, generator=torch.Generator().manual_seed(step))
        state = ens.initial() if tiled else ens.initial(batch)
        z = ens.to_grid(state)  # [E_r, B_r, C, h, w]
        x, aux, target = x[rows], aux[rows], target[rows]
        if tiled:
            x, aux, target = local_tile(x, tile), local_tile(aux, tile), local_tile(target, tile)
        e_r = z.shape[0]
        # members folded into the batch dimension
        out = model(x.repeat(e_r, 1, 1, 1), aux.repeat(e_r, 1, 1, 1), z.reshape(-1, *z.shape[2:]))
        loss = loss_fn(out.reshape(e_r, x.shape[0], *out.shape[1:]), target)
        opt.zero_grad()
        loss.backward()
        if tiled:
            sync_gradients(model.parameters(), ctx)
        opt.step()
        if record is not None:
            record(step + 1, model, loss.item())
    return opt


def _check_training(rec: _Recorder, ctx, tag: str, members: int, batch: int, steps: int = 5) -> None:
    cfg = preset("tiny")
    torch.manual_seed(0)
    serial = FCN3(cfg)
    model = FCN3(cfg, DistributedSphereOps(ctx))
    model.load_state_dict(serial.state_dict())
    snaps: dict[int, tuple[list[torch.Tensor], float]] = {}

    def keep(step, m, loss):
        snaps[step] = ([p.detach().clone() for p in m.parameters()], loss)

    _train(serial, cfg, ctx, steps, members, batch, tiled=False, record=keep)
    dist_snaps: dict[int, tuple[list[torch.Tensor], float]] = {}

    def keep_d(step, m, loss):
        dist_snaps[step] = ([p.detach().clone() for p in m.parameters()], loss)

    _train(model, cfg, ctx, steps, members, batch, tiled=True, record=keep_d)
    for step in (1, steps):
        sp, sl = snaps[step]
        dp, dl = dist_snaps[step]
        rec(f"train/weights/step{step}/{tag}", max(_err(a, b) for a, b in zip(dp, sp, strict=True)))
        rec(f"train/loss/step{step}/{tag}", abs(dl - sl) / abs(sl))
    rec(f"train/replicas/{tag}", max_replica_difference(list(model.parameters()), ctx.group("world")))


def _weights_payload(model: torch.nn.Module, opt=None, step: int = 2) -> dict:
    """The smallest payload the checkpoint format accepts (what a custom training loop would save)."""
    return {
        "model": model.state_dict(),
        "optimizer": None if opt is None else opt.state_dict(),
        "model_config": {},
        "config": {},
        "position": {"step": step},
        "data": {},
    }


def _check_checkpoints(rec: _Recorder, ctx, tag: str, workdir: Path) -> None:
    """Train on this layout, save (replicas checked), load serially (and back): the outputs agree."""
    from sciml.errors import SciMLError

    cfg = preset("tiny")
    torch.manual_seed(0)
    serial = FCN3(cfg)
    model = FCN3(cfg, DistributedSphereOps(ctx))
    model.load_state_dict(serial.state_dict())
    opt = _train(model, cfg, ctx, 2, members=2 * ctx.mesh.ensemble, batch=ctx.mesh.batch, tiled=True)
    path = workdir / f"ckpt-{tag}.pt"
    written = save_checkpoint(path, _weights_payload(model, opt), ctx.group("world"))
    rec(f"ckpt/rank0_writes/{tag}", 0.0 if (written is not None) == (ctx.rank == 0) else 1.0)
    dist.barrier()
    # distributed -> serial
    fresh = FCN3(cfg)
    payload = load_checkpoint(path)
    fresh.load_state_dict(payload["model"])
    torch.optim.Adam(fresh.parameters()).load_state_dict(payload["optimizer"])
    x, aux, z = _model_inputs(cfg, 1, seed=9)
    tile = ctx.tile(cfg.nlat, cfg.nlon)
    yd = gather_tiles(model(local_tile(x, tile), local_tile(aux, tile), local_tile(z, tile)), ctx, cfg.nlat, cfg.nlon)
    rec(f"ckpt/dist_to_serial/{tag}", _err(fresh(x, aux, z), yd))
    # serial -> distributed: a serially written checkpoint drives the tiled model
    torch.manual_seed(1)
    other = FCN3(cfg)
    spath = workdir / f"serial-{tag}.pt"
    if ctx.rank == 0:
        save_checkpoint(spath, _weights_payload(other))
    dist.barrier()
    model2 = FCN3(cfg, DistributedSphereOps(ctx))
    model2.load_state_dict(load_checkpoint(spath)["model"])
    yd = gather_tiles(model2(local_tile(x, tile), local_tile(aux, tile), local_tile(z, tile)), ctx, cfg.nlat, cfg.nlon)
    rec(f"ckpt/serial_to_dist/{tag}", _err(yd, other(x, aux, z)))
    # replicas that disagree (a missed gradient sync) are refused on every rank, and nothing is written
    bad = _weights_payload(model)
    bad["model"] = {k: v + (1e-3 * ctx.rank if torch.is_floating_point(v) else 0) for k, v in bad["model"].items()}
    bpath = workdir / f"bad-{tag}.pt"
    try:
        save_checkpoint(bpath, bad, ctx.group("world"))
        refused = False
    except SciMLError:
        refused = True
    dist.barrier()
    rec(f"ckpt/replica_mismatch_refused/{tag}", 0.0 if refused and not bpath.exists() else 1.0)
    # rank 0 cannot write (its folder would be a file): every rank raises instead of waiting for the timeout
    try:
        save_checkpoint(path / "x.pt", _weights_payload(model), ctx.group("world"))
        raised = False
    except (OSError, SciMLError):
        raised = True
    rec(f"ckpt/write_failure_reaches_every_rank/{tag}", 0.0 if raised else 1.0)


# ------------------------------------------------------------------ trainer hooks and tiled data


def _check_hooks(rec: _Recorder, ctx, tag: str) -> None:
    hooks = DistributedTrainHooks(ctx)
    members, batch, chans = 4, 2, 3
    g = torch.Generator().manual_seed(12)
    fc = torch.randn(members, batch, chans, NLAT, NLON, generator=g)
    obs = torch.randn(batch, chans, NLAT, NLON, generator=g)
    mem = hooks.member_indices(members)
    rows = hooks.batch_rows(list(range(batch)))
    tile = ctx.tile(NLAT, NLON)
    serial = fcn3_loss(NLAT, NLON, FairCRPS(), channel_weights=[0.2, 0.3, 0.5])
    twin = hooks.make_loss(serial)
    fs = fc.clone().requires_grad_(True)
    fd = local_tile(fc[mem][:, rows], tile).requires_grad_(True)
    ls, ld = serial(fs, obs), twin(fd, local_tile(obs[rows], tile))
    rec(f"hooks/loss/value/{tag}", abs(ld.item() - ls.item()) / abs(ls.item()))
    ls.backward()
    ld.backward()
    rec(f"hooks/loss/grad/{tag}", _rel(fd.grad / ctx.data.size, local_tile(fs.grad[mem][:, rows], tile)))
    # every (member, sample) pair is held by exactly one rank of each spatial position
    count = torch.zeros(members, batch, dtype=torch.float64)
    if ctx.coords.h == 0 and ctx.coords.w == 0:
        for e in mem:
            for b in rows:
                count[e, b] += 1.0
    dist.all_reduce(count)
    rec(f"hooks/partition/{tag}", float((count - 1.0).abs().max()))
    mean = hooks.reduce_mean(torch.tensor([float(ctx.rank)], dtype=torch.float64))
    rec(f"hooks/reduce_mean/{tag}", abs(mean.item() - (ctx.world_size - 1) / 2))
    dt = hooks.tile(NLAT, NLON)
    rec(f"hooks/data_tile/{tag}", 0.0 if dt.slices == tile.slices else 1.0)
    # the trainer's noise: its serial EnsembleNoise for the local members, tiled (all members, global batch)
    proc = DiffusionNoiseS2(NLAT, NLON, [heat_kernel_kT(800.0)])
    serial_noise = EnsembleNoise(proc, members=4, seed=5)
    local_noise = EnsembleNoise(proc, members=4, seed=5, member_indices=mem)
    tiled = TiledEnsembleNoise.from_serial(local_noise, ctx, batch)
    full = serial_noise.to_grid(serial_noise.initial(batch))[mem][:, rows]
    rec(f"hooks/noise/{tag}", _err(tiled.to_grid(tiled.initial(1)), local_tile(full, tile)))


def _check_data(rec: _Recorder, ctx, tag: str, store: str) -> None:
    """Each rank reads only its tile of its batch rows; gathered, that is the full-grid read."""
    hooks = DistributedTrainHooks(ctx)
    cfg = DataConfig(store=Path(store))
    full = ForecastDataset(cfg, 1)
    nlat, nlon = full.grid.nlat, full.grid.nlon
    mine = ForecastDataset(cfg, 1, tile=hooks.tile(nlat, nlon))
    indices = [len(full) - 1, 0]
    worst = 0.0
    for i in hooks.batch_rows(indices):
        got, ref = mine[i], full[i]
        for key in ("input", "target", "static", "features"):
            assembled = gather_tiles(got[key], ctx, nlat, nlon)
            if ref[key].numel() == 0:  # e.g. no static fields in the shallow-water store
                worst = max(worst, 0.0 if assembled.shape == ref[key].shape else 1.0)
            else:
                worst = max(worst, _err(assembled, ref[key]))
    rec(f"data/tiles/{tag}", worst)


# ------------------------------------------------------------------ the 4-rank job


def _job(out: str, store: str) -> None:
    workdir = Path(out).parent
    timings: dict[str, float] = {}
    values: dict[str, float] = {}

    # the first context starts torch.distributed from the torchrun-style variables and owns it; the layouts
    # below join it (re-creating the default group on the same port would race with the old store)
    base = init_parallel(ParallelConfig(timeout_s=TIMEOUT_S))

    def layout(name, **kw):
        t0 = time.perf_counter()
        ctx = init_parallel(ParallelConfig(timeout_s=TIMEOUT_S, **kw))
        return ctx, t0

    # tiles 2x2, 2x1 (x 2 batch ranks), 1x2 (x 2 batch ranks): layers, model, CRPS, noise
    for tag, kw in LAYOUTS.items():
        ctx, t0 = layout(tag, **kw)
        rec = _Recorder(ctx)
        _check_layers(rec, ctx, tag, torch.float64)
        _check_layers(rec, ctx, tag, torch.float32)
        _check_model(rec, ctx, tag)
        _check_crps(rec, ctx, tag)
        _check_noise(rec, ctx, tag)
        if tag == "2x2":
            _check_checkpoints(rec, ctx, tag, workdir)
        values.update(rec.values)
        timings[tag] = time.perf_counter() - t0
        ctx.close()
    # 2 latitude x 2 ensemble ranks; 2 latitude x 2 batch (data-parallel) ranks: CRPS, noise, optimiser steps
    for tag, kw, members, batch in (("h2e2", dict(h=2, ensemble=2), 4, 2), ("h2b2", dict(h=2), 2, 2)):
        ctx, t0 = layout(tag, **kw)
        rec = _Recorder(ctx)
        _check_crps(rec, ctx, tag)
        _check_noise(rec, ctx, tag)
        _check_training(rec, ctx, tag, members=members, batch=batch)
        _check_hooks(rec, ctx, tag)
        _check_data(rec, ctx, tag, store)
        if tag == "h2e2":
            _check_checkpoints(rec, ctx, tag, workdir)
        values.update(rec.values)
        timings[tag] = time.perf_counter() - t0
        ctx.close()
    if dist.get_rank() == 0:
        Path(out).write_text(json.dumps({"errors": values, "seconds": timings}, indent=1))
    base.close()


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """A small shallow-water store (33 x 64, two days after a half-day spin-up, 6-hourly) with statistics."""
    cfg = dataclasses.replace(DATA_PRESETS["tiny"], days=2, spinup_days=0.5, trajectories=1)
    ds, _ = simulate(cfg)
    path = tmp_path_factory.mktemp("swe") / "swe.zarr"
    src = source_from_dataset(ds)
    write_store(src, path)
    compute_stats(src).save(stats_path(path))
    return path


@pytest.fixture(scope="module")
def results(tmp_path_factory, store):
    out = tmp_path_factory.mktemp("dist") / "results.json"
    run = run_local(_job, 4, args=(str(out), str(store)), timeout_s=240)
    assert run.ok, f"4-rank job failed: exit codes {run.exitcodes}, timed out {run.timed_out}"
    return json.loads(out.read_text())["errors"]


def _select(results, prefix):
    hits = {k: v for k, v in results.items() if k.startswith(prefix)}
    assert hits, f"no results for {prefix}"
    return hits


@pytest.mark.parametrize("tag", list(LAYOUTS))
@pytest.mark.parametrize("layer", ["sht", "isht", "disco_enc", "disco_loc", "resample", "quadrature"])
def test_layer_twins_match_serial(results, layer, tag):
    """Distributed SHT/ISHT/DISCO/resample/quadrature equal serial on uneven tiles: fp64 1e-12, fp32 1e-5.

    Outputs: max abs error (inputs are O(1) Gaussian fields); gradients: max abs error relative to the largest
    serial gradient entry (they scale with the number of grid points).
    """
    for key, err in _select(results, f"{layer}/").items():
        if f"/{tag}/" not in key:
            continue
        tol = 1e-12 if key.endswith("float64") else 1e-5
        assert err <= tol, f"{key}: {err:.3g} > {tol}"


@pytest.mark.parametrize("name", ["model", "model-degree-one"])
@pytest.mark.parametrize("tag", list(LAYOUTS))
def test_model_matches_serial(results, tag, name):
    """FCN3-tiny on tiles, also with a (random) degree-1 wind map: outputs (abs) and input/weight gradients
    (relative to their max) within 1e-5 (fp32)."""
    for kind in ("fwd", "grad_x", "grad_w"):
        err = results[f"{name}/{kind}/{tag}"]
        assert err <= 1e-5, f"{name}/{kind}/{tag}: {err:.3g}"


@pytest.mark.parametrize("tag", [*LAYOUTS, "h2e2", "h2b2"])
def test_ensemble_parallel_crps_matches_serial(results, tag):
    """Grid CRPS (fp64) to 1e-12, spectral CRPS (fp32 SHT) to 1e-5, values and gradients, fair and standard."""
    for key, err in _select(results, "crps/").items():
        if not key.endswith(f"/{tag}"):
            continue
        tol = 1e-12 if "/grid/" in key else 1e-5
        assert err <= tol, f"{key}: {err:.3g} > {tol}"


@pytest.mark.parametrize("tag", [*LAYOUTS, "h2e2", "h2b2"])
def test_noise_tiles_match_serial(results, tag):
    """Per-member noise depends on global member/sample indices only: the tile equals the serial field's tile."""
    assert results[f"noise/tile/{tag}"] <= 1e-6


@pytest.mark.parametrize("tag", ["h2e2", "h2b2"])
def test_optimiser_steps_match_serial(results, tag):
    """1 and 5 Adam steps at the same global batch/ensemble: weights within 1e-5 of serial, replicas identical."""
    for step in (1, 5):
        assert results[f"train/weights/step{step}/{tag}"] <= 1e-5
        assert results[f"train/loss/step{step}/{tag}"] <= 1e-5
    assert results[f"train/replicas/{tag}"] == 0.0


@pytest.mark.parametrize("tag", ["2x2", "h2e2"])
def test_checkpoints_load_at_any_layout(results, tag):
    """Trained on 2x2 (or 2 lat x 2 ens) -> loaded serially, and serial -> loaded on the tiles: same outputs."""
    assert results[f"ckpt/dist_to_serial/{tag}"] <= 1e-5
    assert results[f"ckpt/serial_to_dist/{tag}"] <= 1e-5
    assert results[f"ckpt/rank0_writes/{tag}"] == 0.0
    assert results[f"ckpt/replica_mismatch_refused/{tag}"] == 0.0
    assert results[f"ckpt/write_failure_reaches_every_rank/{tag}"] == 0.0


# ------------------------------------------------------------------ failure handling and the one-rank path


def _raise_on_rank_1() -> None:
    ctx = init_parallel(ParallelConfig(timeout_s=TIMEOUT_S))
    if ctx.rank == 1:
        raise RuntimeError("rank 1 fails on purpose")
    all_max(1.0, ctx.group("world"))  # rank 0 waits for a peer that is gone
    ctx.close()


def _stuck_rank_1(timeout_s: float) -> None:
    ctx = init_parallel(ParallelConfig(timeout_s=timeout_s))
    if ctx.rank == 1:
        time.sleep(120.0)  # alive but never joins the collective
    all_max(1.0, ctx.group("world"))
    ctx.close()


def test_a_raising_rank_fails_the_job_quickly():
    run = run_local(_raise_on_rank_1, 2, timeout_s=60, grace_s=2.0)
    assert not run.ok and not run.timed_out
    assert run.exitcodes[1] == 1
    assert run.seconds < 30


def test_collective_timeout_ends_a_stuck_job():
    """A rank stuck outside a collective: the waiting rank raises after the collective timeout (3 s)."""
    run = run_local(_stuck_rank_1, 2, args=(3.0,), timeout_s=60, grace_s=1.0)
    assert not run.ok and not run.timed_out
    assert run.exitcodes[0] == 1  # the waiting rank raised (timeout), then the stuck one was terminated
    assert 3.0 <= run.seconds < 30


def _one_rank(out: str) -> None:
    import os

    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        os.environ.pop(var, None)  # no launcher at all: the plain `python` path
    ctx = init_parallel(ParallelConfig())
    assert ctx.env.launcher == "single" and ctx.world_size == 1 and dist.is_initialized()
    assert torch.get_num_threads() == 1
    rec = _Recorder(ctx)
    _check_model(rec, ctx, "1x1")
    cfg = preset("tiny")
    torch.manual_seed(0)
    serial = FCN3(cfg)
    model = FCN3(cfg, DistributedSphereOps(ctx))
    model.load_state_dict(serial.state_dict())
    x, aux, z = _model_inputs(cfg, 1)
    rec("model/one_rank_tile_is_grid", 0.0 if ctx.tile(cfg.nlat, cfg.nlon).shape == (cfg.nlat, cfg.nlon) else 1.0)
    rec("model/one_rank_equal", _err(model(x, aux, z), serial(x, aux, z)))
    Path(out).write_text(json.dumps(rec.values))
    ctx.close()
    assert not dist.is_initialized()


def test_world_size_one_runs_the_same_code_path(tmp_path):
    out = tmp_path / "one.json"
    run = run_local(_one_rank, 1, args=(str(out),), timeout_s=60)
    assert run.ok, run
    values = json.loads(out.read_text())
    assert values["model/one_rank_tile_is_grid"] == 0.0
    assert values["model/one_rank_equal"] <= 1e-6
    assert values["model/fwd/1x1"] <= 1e-6 and values["model/grad_w/1x1"] <= 1e-5


def test_scaling_benchmark_runs(tmp_path):
    """bench/distributed_scaling.py's rank function on 2 processes (1 step): the table row is well formed."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "bench" / "distributed_scaling.py"
    spec = importlib.util.spec_from_file_location("distributed_scaling", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "row.json"
    run = run_local(bench.worker, 2, args=(33, 64, 1, 0, str(out), "strong"), timeout_s=120)
    assert run.ok, run
    row = json.loads(out.read_text())
    assert (row["procs"], row["layout"], row["tile"], row["backend"]) == (2, "2x1", "17x64", "gloo")
    assert row["step_s"] > 0 and 0.0 < row["comm_share"] < 1.0 and row["mem_MB_per_rank"] > 0
    assert bench.weak_grid((33, 64), 4) == (65, 128)


@pytest.mark.parametrize("tag", ["h2e2", "h2b2"])
def test_train_hooks(results, tag):
    """Hooks: the fcn3 loss twin equals serial (fp32 SHT: 1e-5), members x rows partitioned, world mean, tile."""
    assert results[f"hooks/loss/value/{tag}"] <= 1e-5 and results[f"hooks/loss/grad/{tag}"] <= 1e-5
    assert results[f"hooks/partition/{tag}"] == 0.0
    assert results[f"hooks/reduce_mean/{tag}"] <= 1e-12
    assert results[f"hooks/data_tile/{tag}"] == 0.0
    assert results[f"hooks/noise/{tag}"] <= 1e-6


@pytest.mark.parametrize("tag", ["h2e2", "h2b2"])
def test_each_rank_reads_only_its_tile(results, tag):
    """ForecastDataset on the rank's tile and batch rows, gathered over the spatial group == the full read."""
    assert results[f"data/tiles/{tag}"] == 0.0


def _train_ensemble_parallel(cfg, out: str) -> None:
    ctx = init_parallel(ParallelConfig(ensemble=2, timeout_s=TIMEOUT_S))
    Trainer(cfg, out, hooks=DistributedTrainHooks(ctx)).run()
    ctx.close()


def test_trainer_with_ensemble_parallel_hooks_matches_serial(store, tmp_path):
    """The project's Trainer with DistributedTrainHooks on 2 ensemble ranks: same losses and weights as serial.

    8 steps of the ``tiny`` curriculum: 6 with 4 members (2 per rank, standard CRPS), then 2 with 4 antithetic
    members (2 per rank, fair CRPS without partner pairs, rollout 2). Only rank 0 writes the run folder.
    """
    cfg = load_train_config(
        "tiny",
        {"data.store": str(store), "data.valid_start": None, "stages.0.steps": 6, "stages.1.steps": 2},
    )
    run = run_local(_train_ensemble_parallel, 2, args=(cfg, str(tmp_path / "dist")), timeout_s=240)
    assert run.ok, run
    Trainer(cfg, tmp_path / "serial").run()
    dist_ck = load_checkpoint(tmp_path / "dist" / "checkpoint.pt")
    ser_ck = load_checkpoint(tmp_path / "serial" / "checkpoint.pt")
    assert dist_ck["position"]["step"] == ser_ck["position"]["step"] == 8
    worst = max(float((dist_ck["model"][k] - v).abs().max()) for k, v in ser_ck["model"].items())
    assert worst <= 1e-5, worst
    losses = [r["loss"] for r in dist_ck["metrics"]["train"]]
    ref = [r["loss"] for r in ser_ck["metrics"]["train"]]
    assert len(losses) == len(ref) == 8
    assert max(abs(a - b) / abs(b) for a, b in zip(losses, ref, strict=True)) <= 1e-5


def _sleep_forever() -> None:
    time.sleep(600.0)


def test_harness_kills_a_job_that_outlives_its_timeout():
    run = run_local(_sleep_forever, 2, timeout_s=2.0)
    assert run.timed_out and not run.ok
    assert all(c is not None and c != 0 for c in run.exitcodes)  # terminated by the harness
    assert run.seconds < 15


def _tiled_training(cfg, out: str, layout: dict) -> None:
    ctx = init_parallel(ParallelConfig(timeout_s=TIMEOUT_S, **layout))
    TiledTrainer(cfg, out, hooks=DistributedTrainHooks(ctx)).run()
    ctx.close()


@pytest.mark.parametrize(
    "tag, layout, batch, input_steps",
    [("h2e2", dict(h=2, ensemble=2), 1, 1), ("w2b2", dict(w=2), 2, 1), ("h2b2-two-step", dict(h=2), 2, 2)],
)
def test_tiled_trainer_matches_serial(store, tmp_path, tag, layout, batch, input_steps):
    """TiledTrainer on 4 ranks (2 lat x 2 ensemble; 2 lon x 2 batch) = serial Trainer: losses, weights, validation.

    8 steps of the ``tiny`` curriculum (6 standard-CRPS steps with 4 members, 2 antithetic 4-member fair-CRPS steps
    with rollout 2), validation (fair CRPS, ensemble-mean RMSE, SSR over 2 windows, 2 members) every 4 steps. The
    two-step model (2 lat x 2 batch) also reads each window's previous state on its tile and rows.
    """
    over = {
        "model.overrides.input_steps": input_steps,
        "data.store": str(store),
        "data.train_end": "2001-01-02T06:00",
        "data.valid_start": "2001-01-02T00:00",
        "validation.every": 4,
        "stages.0.steps": 6,
        "stages.1.steps": 2,
        "stages.0.batch_size": batch,
        "stages.1.batch_size": batch,
    }
    cfg = load_train_config("tiny", over)
    run = run_local(_tiled_training, 4, args=(cfg, str(tmp_path / "dist"), layout), timeout_s=240)
    assert run.ok, run
    Trainer(cfg, tmp_path / "serial").run()
    got = load_checkpoint(tmp_path / "dist" / "checkpoint.pt")
    ref = load_checkpoint(tmp_path / "serial" / "checkpoint.pt")
    worst = max(float((got["model"][k] - v).abs().max()) for k, v in ref["model"].items())
    assert worst <= 1e-5, worst
    assert ("tendency_scale" in ref["model"]) == (input_steps == 2)
    for kind in ("train", "valid"):
        a, b = got["metrics"][kind], ref["metrics"][kind]
        assert len(a) == len(b) > 0
        for ra, rb in zip(a, b, strict=True):
            for key, value in rb.items():
                if key.startswith(("loss", "val_")):
                    assert abs(ra[key] - value) <= 1e-5 * abs(value), (kind, key, ra[key], value)


def _cli(argv: list[str]) -> None:
    from sciml.cli import main

    code = main(argv)
    if code != 0:
        raise SystemExit(code)


def test_cli_train_with_h_and_w_parallel_matches_serial(store, tmp_path):
    """`sciml forecast train ... --h-parallel 2 --w-parallel 2` on 4 torchrun-style ranks = the serial command."""
    common = ["forecast", "train", "--config", "tiny", "--set", f"data.store={store}", "--set", "data.valid_start=null"]
    common += ["--set", "stages.0.steps=3", "--set", "stages.1.steps=1"]
    run = run_local(
        _cli, 4, args=([*common, "--out", str(tmp_path / "dist"), "--h-parallel", "2", "--w-parallel", "2"],)
    )
    assert run.ok, run
    _cli([*common, "--out", str(tmp_path / "serial")])
    got = load_checkpoint(tmp_path / "dist" / "checkpoint.pt")
    ref = load_checkpoint(tmp_path / "serial" / "checkpoint.pt")
    assert got["position"]["step"] == ref["position"]["step"] == 4
    worst = max(float((got["model"][k] - v).abs().max()) for k, v in ref["model"].items())
    assert worst <= 1e-5, worst
    assert (tmp_path / "dist" / "config.yaml").exists() and (tmp_path / "dist" / "train.csv").exists()


@pytest.mark.slow  # ~20-35 s: two fresh interpreters import torch
def test_real_torchrun_launch(store, tmp_path):
    """`torchrun --nproc_per_node 2 -m sciml.cli forecast train ... --h-parallel 2`: the real launcher."""
    import os
    import subprocess
    import sys

    from sciml.forecasting.distributed.spawn import free_port

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port())]
    cmd += ["-m", "sciml.cli", "forecast", "train", "--config", "tiny", "--set", f"data.store={store}"]
    cmd += ["--set", "data.valid_start=null", "--set", "stages.0.steps=1", "--set", "stages.1.steps=1"]
    cmd += ["--out", str(out), "--h-parallel", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("done: step 2/2") == 2  # both ranks finished the run
    ck = load_checkpoint(out / "checkpoint.pt")
    assert ck["position"]["step"] == 2


def _tiled_partial(cfg, out: str, layout: dict, max_steps: int, resume: str | None) -> None:
    ctx = init_parallel(ParallelConfig(timeout_s=TIMEOUT_S, **layout))
    TiledTrainer(cfg, out, hooks=DistributedTrainHooks(ctx), resume=resume).run(max_steps)
    ctx.close()


def test_runs_resume_across_layouts(store, tmp_path):
    """Stop at step 4 (mid-stage) on one layout, resume on another: the serial uninterrupted run's trajectory.

    2 lat x 2 ensemble -> serial, and serial -> 2 lon x 2 batch. The checkpoint carries every member's noise
    stream (as serially), so the resumed noise, data order and optimiser state continue exactly.
    """
    over = {"data.store": str(store), "data.valid_start": None, "stages.0.steps": 6, "stages.1.steps": 2}
    over |= {"stages.0.batch_size": 2, "stages.1.batch_size": 2, "checkpoint_every": 4}
    cfg = load_train_config("tiny", over)
    Trainer(cfg, tmp_path / "ref").run()
    ref = load_checkpoint(tmp_path / "ref" / "checkpoint.pt")

    def check(path):
        got = load_checkpoint(path)
        assert got["position"]["step"] == 8
        worst = max(float((got["model"][k] - v).abs().max()) for k, v in ref["model"].items())
        assert worst <= 1e-5, worst
        losses = [r["loss"] for r in got["metrics"]["train"]]
        assert (
            max(abs(a - r["loss"]) / abs(r["loss"]) for a, r in zip(losses, ref["metrics"]["train"], strict=True))
            <= 1e-5
        )

    a = tmp_path / "a"
    run = run_local(_tiled_partial, 4, args=(cfg, str(a), dict(h=2, ensemble=2), 4, None), timeout_s=240)
    assert run.ok, run
    assert load_checkpoint(a / "checkpoint.pt")["position"]["step"] == 4
    Trainer(cfg, a, resume=a / "checkpoint.pt").run()
    check(a / "checkpoint.pt")

    b = tmp_path / "b"
    Trainer(cfg, b).run(4)
    run = run_local(_tiled_partial, 4, args=(cfg, str(b), dict(w=2), None, str(b / "checkpoint.pt")), timeout_s=240)
    assert run.ok, run
    check(b / "checkpoint.pt")
