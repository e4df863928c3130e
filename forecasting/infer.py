r"""Autoregressive ensemble inference, streamed to a WeatherBench 2-layout zarr store one lead time at a time.

For every initial time :math:`t_0` and member :math:`e`,

.. math::

    \hat u^e_0 = u(t_0),\qquad \hat u^e_{k+1} = F_\theta(\hat u^e_k, a(t_0 + k\Delta), z^e_k),\qquad
    z^e_{k+1} = \varphi z^e_k + \sqrt{1-\varphi^2}\,\xi^e_k,

with the AR(1) diffusion noise of the training run (stationary first draw, then AR updates, one seeded stream per
member, optionally antithetic pairs). Members and initial times are folded into the batch of the model calls, at
most ``InferConfig.max_batch`` samples per call (the activations of one call are what bounds memory). A
two-step model (``input_steps: 2``) also sees each member's previous state,
:math:`\hat u^e_{k+1} = F_\theta(\hat u^e_k, (\hat u^e_k - \hat u^e_{k-1})\,s, a, z^e_k)`, starting from
:math:`\hat u^e_{-1} = u(t_0 - \Delta)`, which the store must hold at every initial time.

Output layout (WeatherBench 2 forecast convention): one float32 variable per channel (denormalised, with
``units``/``long_name``), dims ``(time, prediction_timedelta, realization, lat, lon)``; ``time`` is the
initialisation time, ``prediction_timedelta`` the lead (``Δ, 2Δ, ...``; lead 0 is the analysis and is not
written), chunks ``(1, 1, M, nlat, nlon)``. Each lead is appended as soon as it is computed, so memory holds one
state per member, whatever the lead; the store is renamed into place only when complete.

Device and precision (``InferConfig.device``, ``.precision``; :mod:`sciml.forecasting.runtime`): the network, its
state, the noise process, the normalisation and the aux features live on the device; each lead is denormalised
there and copied to the host only to be written. ``bf16`` runs the network under bfloat16 autocast; the state
carried from step to step stays float32. The noise does not depend on the device: every member's innovations
:math:`\xi^e_k` are drawn from a seeded *CPU* generator (:class:`~sciml.forecasting.noise.EnsembleNoise`, one
stream per member) and only then moved to the device, where the AR(1) update and the inverse SHT run, so a seed
gives the same members on CPU and GPU up to floating-point rounding.

Writing overlaps the compute (``InferConfig.overlap_writes``, default on): lead :math:`k` is written to zarr by a
writer thread (:class:`BackgroundWriter`) while lead :math:`k+1` is computed. At most one lead waits or is being
written, so memory holds two leads of output at most; an error of the writer is raised in the caller at the next
lead (for the last lead, when the rollout waits for it before closing the store), and the store is written by the
same calls in the same order as without the thread (bit for bit the same store, renamed into place only when
complete).

Rank-dependent choices go through :class:`InferHooks` (serial defaults here); the distributed twin
:class:`sciml.forecasting.distributed.infer.DistributedInferHooks` puts each rank on its tile, members and initial
times and gathers every lead to rank 0, which writes the same store.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property, partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import xarray as xr

from sciml import __version__
from sciml.errors import SciMLError, UsageError
from sciml.forecasting.runtime import Precision, Runtime, parse_device_spec, resolve_device
from sciml.forecasting.tiles import Tile
from sciml.io import atomic_path
from sciml.progress import NoProgress, Progress

LOGGER = logging.getLogger(__name__)


def parse_lead(text: str) -> pd.Timedelta:
    """``'10d'``, ``'36h'``, ``'6h'``, ``'P5D'``... -> a positive :class:`pandas.Timedelta`."""
    t = str(text).strip()
    if re.fullmatch(r"\d+(\.\d+)?\s*d", t):
        t = t[:-1] + "D"  # pandas deprecates the lower-case day unit
    try:
        lead = pd.Timedelta(t)
    except (ValueError, TypeError):
        raise UsageError(f"lead {text!r} is not a duration; write e.g. 10d, 36h or 6h") from None
    if lead <= pd.Timedelta(0):
        raise UsageError(f"lead {text!r} must be positive")
    return lead


def parse_time(text: str) -> pd.Timestamp:
    """``'2020-01-01T00'`` / ``'2020-01-01 06:00'`` -> :class:`pandas.Timestamp` (naive, UTC)."""
    t = str(text).strip()
    if len(t) == 13 and t[10] == "T":  # 2020-01-01T00: hour only
        t += ":00"
    try:
        return pd.Timestamp(t)
    except (ValueError, TypeError):
        raise UsageError(f"time {text!r} is not an ISO date/time such as 2020-01-01T00") from None


@dataclass(frozen=True)
class InferConfig:
    """What ``sciml forecast infer`` computes."""

    checkpoint: Path
    inits: tuple[str, ...]
    lead: str
    members: int = 16
    out: Path = Path("forecast.zarr")
    store: Path | None = None  # initial conditions; default: the training store recorded in the checkpoint
    seed: int = 0
    centered: bool = False
    overwrite: bool = False
    device: str = "auto"  # auto | cpu | cuda | cuda:N (sciml.forecasting.runtime)
    precision: Precision = "fp32"  # bf16: bfloat16 autocast for the network
    overlap_writes: bool = True  # write lead k on a writer thread while lead k+1 is computed
    # most samples (member x initial time) per network call: bounds the activations held at once; one at a time is
    # also the fastest on a CPU (bench/infer_batch.py: 51 ms per sample against 116 ms for 384 in one call, peak
    # 1.0 GB against 12.1 GB, demo model, two threads); a GPU wants more
    max_batch: int = 1

    def __post_init__(self) -> None:
        parse_device_spec(self.device)
        if self.precision not in ("fp32", "bf16"):
            raise UsageError(f"--precision must be fp32 or bf16, got {self.precision!r}")
        if self.members < 1:
            raise UsageError(f"--members must be >= 1, got {self.members}")
        if not self.inits:
            raise UsageError("give at least one --init time")
        if self.max_batch < 1:
            raise UsageError(f"--max-batch must be >= 1, got {self.max_batch}")
        if self.centered and self.members % 2:
            raise UsageError(f"--antithetic needs an even --members, got {self.members}")


class LoadedModel:
    """A trained model rebuilt from a checkpoint, with everything inference needs to check and normalise.

    The checkpoint is read onto the CPU (``map_location="cpu"``), whatever device it was saved from; ``model`` is
    built on first use (so that bad input is refused before the network and torch-harmonics are loaded) and can
    then be moved to any device.
    """

    def __init__(self, checkpoint: str | os.PathLike[str], ops: Any = None) -> None:
        from sciml.config import from_dict
        from sciml.forecasting.checkpoint import DataFacts, load_checkpoint
        from sciml.forecasting.models.config import FCN3Config

        ck = load_checkpoint(checkpoint, map_location="cpu")
        self.path = Path(checkpoint)
        self.facts = DataFacts.from_dict({k: v for k, v in ck["data"].items() if k not in ("mean", "std")})
        self.mean = ck["data"]["mean"].double().reshape(1, -1, 1, 1)
        self.std = ck["data"]["std"].double().reshape(1, -1, 1, 1)
        self.train_config: dict[str, Any] = ck["config"]["train"]
        self.model_config = from_dict(FCN3Config, ck["model_config"])
        self.noise_scales = tuple(float(s) for s in ck.get("noise_scales_km", []))
        self.step_count = int(ck["position"]["step"])
        self._weights = ck["model"]
        self._ops = ops  # SphereOps (None: serial; a tile's twins when distributed)

    @cached_property
    def model(self) -> torch.nn.Module:
        """The network with the checkpoint's weights, in eval mode, on the CPU."""
        from sciml.forecasting.models import FCN3

        model = FCN3(self.model_config, self._ops)
        try:
            model.load_state_dict(self._weights)
        except RuntimeError as exc:
            raise UsageError(
                f"checkpoint {self.path}: its weights do not fit its model config ({str(exc).splitlines()[0]})"
            ) from None
        del self._weights
        return model.eval()

    @property
    def step(self) -> pd.Timedelta:
        return pd.Timedelta(hours=self.facts.step_hours)

    def noise(self):
        from sciml.forecasting.noise import DiffusionNoiseS2, heat_kernel_kT

        mc = self.model_config
        if mc.n_noise == 0:
            return None
        nz = self.train_config.get("noise", {})
        kT = [heat_kernel_kT(s) for s in self.noise_scales]
        return DiffusionNoiseS2(
            mc.nlat, mc.nlon, kT, nz.get("sigma", 1.0), nz.get("lam", 1.0), l_min=nz.get("l_min", 1)
        )


def check_store(lm: LoadedModel, ds: xr.Dataset, where: str) -> None:
    """The store must be on the model's grid and hold its channels and static fields."""
    from sciml.forecasting.data.contract import grid_of

    f = lm.facts
    g = grid_of(ds, where)
    if (g.kind, g.nlat, g.nlon) != (f.grid_kind, f.nlat, f.nlon):
        raise UsageError(
            f"{where} is on the {g.kind} {g.nlat}x{g.nlon} grid but the checkpoint {lm.path} was trained on "
            f"{f.grid_kind} {f.nlat}x{f.nlon}; use a store on the model's grid (or regrid it with `sciml data convert`)"
        )
    missing = [c for c in (*f.channels, *f.static) if c not in ds.data_vars]
    if missing:
        raise UsageError(f"{where} lacks channel(s) {missing} that the model needs ({', '.join(f.channels)})")


def lead_steps(lm: LoadedModel, lead: str) -> int:
    """Number of model steps in ``lead``; it must be a whole multiple of the model step."""
    td = parse_lead(lead)
    n = td / lm.step
    if abs(n - round(n)) > 1e-9:
        raise UsageError(
            f"lead {lead} is not a multiple of the model step {lm.facts.step_hours} h; use e.g. "
            f"{int(np.ceil(n)) * lm.facts.step_hours}h"
        )
    return int(round(n))


def init_indices(ds: xr.Dataset, inits: tuple[str, ...], where: str) -> list[int]:
    """Store time indices of the initial times (each must be a time step of the store)."""
    times = pd.DatetimeIndex(ds["time"].values)
    pos = {t: i for i, t in enumerate(times.as_unit("ns").asi8)}
    out = []
    for text in inits:
        t = parse_time(text)
        i = pos.get(t.as_unit("ns").value)
        if i is None:
            step = (times[1] - times[0]) if times.size > 1 else pd.Timedelta(0)
            raise UsageError(
                f"init time {t} is not in {where} ({times[0]} .. {times[-1]}, every {step}); pick a time step of "
                "the store"
            )
        out.append(i)
    if len(set(out)) != len(out):
        raise UsageError("--init lists the same time twice")
    return out


class ZarrForecastWriter:
    """Appends one lead time after another to a zarr store in the WB2 forecast layout."""

    def __init__(self, path: Path, template: xr.Dataset) -> None:
        self.path = path
        self.template = template
        self.n = 0

    def append(self, lead: pd.Timedelta, fields: np.ndarray) -> None:
        """``fields`` ``[T, M, C, nlat, nlon]`` (physical units) of one lead."""
        t = self.template
        data = {
            c: (("time", "prediction_timedelta", "realization", "lat", "lon"), fields[:, None, :, i])
            for i, c in enumerate(t.attrs["channels"])
        }
        ds = xr.Dataset(data, coords={**t.coords, "prediction_timedelta": [np.timedelta64(lead.value, "ns")]})
        for c in t.attrs["channels"]:
            ds[c].attrs = dict(t[c].attrs)
        ds.attrs = {k: v for k, v in t.attrs.items() if k != "channels"}  # an append rewrites the group attrs
        if self.n == 0:
            m, nlat, nlon = fields.shape[1], fields.shape[-2], fields.shape[-1]
            enc: dict[str, dict[str, Any]] = {c: {"chunks": (1, 1, m, nlat, nlon)} for c in t.attrs["channels"]}
            enc["prediction_timedelta"] = {"units": "hours", "dtype": "int64"}
            ds.to_zarr(self.path, mode="w", zarr_format=3, consolidated=False, encoding=enc)
        else:
            ds.to_zarr(self.path, append_dim="prediction_timedelta", zarr_format=3, consolidated=False)
        self.n += 1

    def close(self) -> None:
        """Consolidate the metadata once all leads are in, so that a plain ``xr.open_zarr(FC)`` (as for a WB2
        store) opens it without the fallback warning; appends stay unconsolidated (one metadata write per lead)."""
        import warnings

        import zarr

        with warnings.catch_warnings():  # zarr-python flags consolidated metadata as outside the v3 spec
            warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
            zarr.consolidate_metadata(str(self.path))


class InferHooks:
    """Rank-dependent choices of :func:`run_inference`; these serial defaults hold everything on one process.

    A distributed run (:class:`sciml.forecasting.distributed.infer.DistributedInferHooks`) answers with its
    latitude x longitude tile, its members, its initial times, and gathers each lead on the writing rank.
    """

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)

    def sphere_ops(self) -> Any:
        """``SphereOps`` the model is built with (None: the serial layers)."""
        return None

    def tile(self, nlat: int, nlon: int) -> Tile:
        """The latitude x longitude tile this process computes (the train hooks' ``tile`` too)."""
        return Tile.full(nlat, nlon)

    def rows(self, n_inits: int) -> slice:
        """Initial times (batch rows) this process computes."""
        return slice(None)

    def member_indices(self, members: int) -> list[int]:
        """Global indices of the members this process computes."""
        return list(range(members))

    def noise(self, process: Any, members: int, seed: int, centered: bool, n_inits: int) -> Any:
        """Noise streams of this process's members (``initial(B)``, ``step``, ``to_grid``: rows and tile)."""
        from sciml.forecasting.noise import EnsembleNoise

        return EnsembleNoise(process, members, seed, centered=centered)

    def is_writer(self) -> bool:
        return True

    def any_true(self, flag: bool) -> bool:
        """Whether ``flag`` is set on any process (a check every process must agree on, to stop together)."""
        return bool(flag)

    def gather(self, fields: torch.Tensor, members: int, n_inits: int, nlat: int, nlon: int) -> np.ndarray | None:
        """``[E_r, B_r, C, h, w]`` local fields (on the device) -> ``[B, M, C, nlat, nlon]`` float32 host array on
        the writer, else None."""
        return fields.float().transpose(0, 1).cpu().numpy()


class BackgroundWriter:
    """Hands each lead to ``writer.append`` on a thread of its own, so that the next lead is computed meanwhile.

    :meth:`append` waits until the previous lead is written, then queues this one and returns: one lead is written
    while the next is computed, never more (memory holds two leads of output at most), and the inner writer sees
    the same calls in the same order as without the thread. An exception of the inner writer is re-raised in the
    caller's thread by the next :meth:`append` or by :meth:`finish`; later leads are then dropped.
    """

    def __init__(self, writer: Any) -> None:
        self.writer = writer
        self._queue: queue.Queue[tuple[pd.Timedelta, np.ndarray] | None] = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="sciml-forecast-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                if self._error is None:
                    self.writer.append(*item)
            except BaseException as exc:  # handed to the caller's thread, which decides
                self._error = exc
            finally:
                self._queue.task_done()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def flush(self) -> None:
        """Wait until the lead in hand is written; raise the writer's error, if any."""
        self._queue.join()
        self._raise()

    def append(self, lead: pd.Timedelta, fields: np.ndarray) -> None:
        self.flush()  # the previous lead is written (or failed)
        self._queue.put((lead, fields))

    def stop(self) -> None:
        """Let the lead in hand be written, then end the thread (errors stay stored)."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def finish(self) -> None:
        """Wait for the last lead and end the thread; raise the writer's error, if any."""
        self.stop()
        self._raise()


@contextlib.contextmanager
def lead_sink(writer: Any, overlap: bool) -> Iterator[Any]:
    """``writer`` itself, or with ``overlap`` a :class:`BackgroundWriter` around it that is finished on leaving.

    On an exception in the block the thread is stopped first (so nothing writes into a store being removed) and
    the block's exception propagates; otherwise the last lead is waited for and a writer error is raised.
    """
    if writer is None or not overlap:
        yield writer
        return
    bg = BackgroundWriter(writer)
    try:
        yield bg
    except BaseException:
        bg.stop()
        raise
    bg.finish()


def previous_indices(ds: xr.Dataset, idx: list[int], step: pd.Timedelta, where: str) -> list[int]:
    """Store time indices of the states one model step before the initial times ``idx`` (a two-step model's
    previous state): each must be in the store, in the same trajectory segment, else one line naming the time."""
    from sciml.forecasting.data.contract import segments

    times = pd.DatetimeIndex(ds["time"].values)
    pos = {t: i for i, t in enumerate(times.as_unit("ns").asi8)}
    seg = segments(ds)
    out = []
    for i in idx:
        j = pos.get((times[i] - step).as_unit("ns").value)
        if j is None or seg[j] != seg[i]:
            why = "is not in" if j is None else "is in another trajectory segment of"
            raise UsageError(
                f"init time {times[i]}: the model has input_steps 2 and needs the state one step earlier, "
                f"{times[i] - step}, which {why} {where}; pick an init time at least {step} after the start of its "
                "trajectory, with no missing step before it"
            )
        out.append(j)
    return out


def _template(lm: LoadedModel, ds: xr.Dataset, init_times: pd.DatetimeIndex, members: int, attrs: dict) -> xr.Dataset:
    channels = list(lm.facts.channels)
    t = xr.Dataset(
        {c: ((), 0.0, dict(ds[c].attrs)) for c in channels},
        coords={
            "time": init_times.as_unit("ns").values,
            "realization": np.arange(members),
            "lat": ds["lat"].values,
            "lon": ds["lon"].values,
        },
    )
    t["lat"].attrs.update(units="degrees_north", long_name="latitude")
    t["lon"].attrs.update(units="degrees_east", long_name="longitude")
    t.attrs = {**attrs, "channels": channels}
    return t


@dataclass
class _Initial:
    """What one process starts a forecast from: its rows and tile of the initial states and static fields."""

    x0: np.ndarray  # [B_r, C, h, w], physical units
    static: torch.Tensor  # [B_r, S, h, w], normalised
    init_times: pd.DatetimeIndex  # all initial times (global)
    rows: slice  # this process's initial times
    lat: np.ndarray  # this process's latitudes and longitudes (degrees)
    lon: np.ndarray
    template: xr.Dataset  # the forecast store's layout
    prev: np.ndarray | None = None  # [B_r, C, h, w] one step before x0 (a two-step model), physical units


def _refuse_nonfinite(x0: np.ndarray, channels: tuple[str, ...], times: pd.DatetimeIndex, store: Path, hooks) -> None:
    """One line naming channel, time and count when any process's initial conditions hold NaN or inf."""
    if not hooks.any_true(not bool(np.isfinite(x0).all())):
        return
    bad = ~np.isfinite(x0)
    where = [
        f"{c} at {times[b]} ({int(bad[b, i].sum())} values)"
        for i, c in enumerate(channels)
        for b in range(x0.shape[0])
        if bad[b, i].any()
    ]
    raise UsageError(f"{store}: NaN/inf in the initial conditions: {'; '.join(where) or 'on another rank'}")


def _normalised_static(lm: LoadedModel, ds: xr.Dataset, ls: slice, xs: slice, batch: int) -> torch.Tensor:
    """The model's static input fields on this tile, normalised with the training statistics, ``[B, S, h, w]``."""
    from sciml.forecasting.data import NormStats

    f = lm.facts
    st = NormStats.load(f.stats)
    assert st.static_mean is not None and st.static_std is not None  # a model with static inputs was trained on them
    si = [st.static_channels.index(s) for s in f.static]
    vals = np.stack([ds[s].isel(lat=ls, lon=xs).values for s in f.static]).astype(np.float64)
    m, s = st.static_mean[si][:, None, None], st.static_std[si][:, None, None]
    static = torch.as_tensor((vals - m) / np.where(s > 0, s, 1.0), dtype=torch.float32)
    return static.unsqueeze(0).expand(batch, *static.shape)


def _provenance(cfg: InferConfig, lm: LoadedModel, store: Path) -> dict[str, Any]:
    """Global attributes of the forecast store: where it came from and how it was made."""
    return {
        "source": "sciml forecast infer",
        "sciml_version": __version__,
        "checkpoint": str(lm.path),
        "checkpoint_step": lm.step_count,
        "initial_conditions": str(store),
        "members": cfg.members,
        "seed": cfg.seed,
        "antithetic": int(cfg.centered),
        "step_hours": lm.facts.step_hours,
        "train_start": str(lm.train_config["data"].get("train_start")),
        "train_end": str(lm.train_config["data"].get("train_end")),
    }


def _read_initial(cfg: InferConfig, lm: LoadedModel, store: Path, hooks: InferHooks) -> _Initial:
    """Check the store against the model, pick the initial times and read this process's part of them."""
    from sciml.forecasting.data.dataset import open_canonical

    f = lm.facts
    ds = open_canonical(store)
    try:
        check_store(lm, ds, str(store))
        idx = init_indices(ds, cfg.inits, str(store))
        init_times = pd.DatetimeIndex(ds["time"].values)[idx]
        rows, (ls, xs) = hooks.rows(len(idx)), hooks.tile(f.nlat, f.nlon).slices
        x0 = np.stack([ds[c].isel(time=idx[rows], lat=ls, lon=xs).values for c in f.channels], axis=1)  # [B, C, H, W]
        _refuse_nonfinite(x0, f.channels, init_times[rows], store, hooks)
        prev = None
        if lm.model_config.input_steps == 2:
            before = previous_indices(ds, idx, lm.step, str(store))[rows]
            prev = np.stack([ds[c].isel(time=before, lat=ls, lon=xs).values for c in f.channels], axis=1)
            _refuse_nonfinite(prev, f.channels, pd.DatetimeIndex(ds["time"].values)[before], store, hooks)
        static = torch.zeros(x0.shape[0], 0, *x0.shape[-2:])
        if f.static:
            static = _normalised_static(lm, ds, ls, xs, x0.shape[0])
        template = _template(lm, ds, init_times, cfg.members, _provenance(cfg, lm, store))
    finally:
        ds.close()
    lat, lon = template["lat"].values[ls], template["lon"].values[xs]
    return _Initial(x0, static, init_times, rows, lat, lon, template, prev)


@torch.no_grad()
def run_inference(
    cfg: InferConfig,
    progress: Progress | None = None,
    writer_cls=ZarrForecastWriter,
    hooks: InferHooks | None = None,
) -> dict[str, Any]:
    """Run the ensemble forecasts of ``cfg`` and write ``cfg.out``; returns a summary dict.

    ``hooks`` (default :class:`InferHooks` on ``cfg.device``, serial) decide what this process computes, on which
    device, and who writes. Bad input is refused before the network is built.
    """
    progress = progress or NoProgress()
    out = Path(cfg.out)
    if out.exists() and not cfg.overwrite:
        raise UsageError(f"{out} exists; pass --overwrite to replace it or choose another --out")
    hooks = hooks or InferHooks(resolve_device(cfg.device))
    runtime = Runtime(hooks.device, cfg.precision)
    lm = LoadedModel(cfg.checkpoint, hooks.sphere_ops())
    store = Path(cfg.store or lm.facts.store)
    if not store.exists():
        raise UsageError(f"initial-condition store {store} does not exist; pass --data STORE")
    nsteps = lead_steps(lm, cfg.lead)
    init = _read_initial(cfg, lm, store, hooks)
    lm.model.to(runtime.device)
    progress.start(nsteps, f"forecast {cfg.members} members x {len(init.init_times)} init(s) on {runtime.device}")
    try:
        with atomic_path(out, directory=True) if hooks.is_writer() else contextlib.nullcontext() as tmp:
            writer = writer_cls(tmp, init.template) if hooks.is_writer() else None
            with lead_sink(writer, cfg.overlap_writes) as sink:
                _rollout(cfg, lm, init, hooks, runtime, nsteps, sink, progress)
                # every rank hears whether the last lead and the metadata were written before any reports success
                if cfg.overlap_writes:
                    _agree_write(hooks, None if sink is None else sink.flush, f"at lead {nsteps * lm.step}")
                _agree_write(hooks, None if writer is None else writer.close, "closing the store")
    finally:
        progress.close()
    if hooks.is_writer():
        LOGGER.info("wrote %s", out)
    inits = [str(t) for t in init.init_times]
    return {
        "out": str(out),
        "inits": inits,
        "steps": nsteps,
        "members": cfg.members,
        "device": str(runtime.device),
        "precision": runtime.precision,
    }


def _rollout(
    cfg: InferConfig,
    lm: LoadedModel,
    init: _Initial,
    hooks: InferHooks,
    runtime: Runtime,
    nsteps: int,
    writer: Any,
    progress: Progress,
) -> None:
    """Step every member ``nsteps`` times with its own noise stream; hand each lead to ``writer`` (on the writer).

    Everything the step needs lives on ``runtime.device``; the noise innovations come from CPU generators (see
    the module docstring). Each lead is denormalised on the device and copied to the host by ``hooks.gather``.
    """
    from sciml.forecasting.data import resolve_features
    from sciml.forecasting.models import ensemble_step

    f, device = lm.facts, runtime.device
    n_inits = len(init.init_times)
    features = resolve_features(f.features)
    mean, std = lm.mean.to(device), lm.std.to(device)  # float64: denormalised as on the CPU
    e_local = len(hooks.member_indices(cfg.members))

    def members(x: np.ndarray) -> torch.Tensor:  # normalised, one copy per member: [M, B, C, H, W]
        x_n = ((torch.as_tensor(x, dtype=torch.float64).to(device) - mean) / std).float()
        return x_n.unsqueeze(0).expand(e_local, *x_n.shape).contiguous()

    state = members(init.x0)
    prev = None if init.prev is None else members(init.prev)  # a two-step model's previous state per member
    process = lm.noise()
    if process is not None:
        process.to(device)  # spectra and inverse SHT on the device; the generators stay on the CPU
    noise = hooks.noise(process, cfg.members, cfg.seed, cfg.centered, n_inits) if process is not None else None
    z = noise.initial(n_inits) if noise is not None else None
    static = init.static.to(device)
    for k in range(nsteps):
        valid = init.init_times[init.rows] + k * lm.step  # the time the model steps from
        feats = [torch.as_tensor(ft(valid.values, init.lat, init.lon)[:, :]).to(device) for ft in features]
        aux = torch.cat([static, *feats], dim=1) if (feats or f.static) else None
        if noise is not None and z is not None and k > 0:
            z = noise.step(z)
        zg = noise.to_grid(z) if noise is not None and z is not None else None
        with runtime.autocast():
            new = ensemble_step(lm.model, state, aux, zg, prev, max_batch=cfg.max_batch)
        if prev is not None:
            prev = state
        state = new.float()  # bf16 autocast returns bfloat16; the carried state stays float32
        phys = (state.double() * std + mean).float()  # [M, B, C, H, W]
        if hooks.any_true(not bool(torch.isfinite(phys).all())):
            raise SciMLError(f"the forecast became non-finite at lead {(k + 1) * lm.step}")
        fields = hooks.gather(phys, cfg.members, n_inits, f.nlat, f.nlon)  # [B, M, C, H, W] on the writer's host
        lead = (k + 1) * lm.step
        # on the writer thread, append waits for the previous lead and raises that lead's error
        written = lead - lm.step if cfg.overlap_writes else lead
        _agree_write(hooks, None if writer is None else partial(writer.append, lead, fields), f"at lead {written}")
        progress.update(1)


def _agree_write(hooks: InferHooks, write: Callable[[], None] | None, where: str) -> None:
    """Call ``write`` (the writing rank's part, None on the others) and agree over the world whether it failed.

    The writing rank re-raises its own error; the others raise :class:`SciMLError` naming ``where``, so that no
    rank waits for the collective timeout or reports success while the store is removed.
    """
    error: BaseException | None = None
    if write is not None:
        try:
            write()
        except BaseException as exc:  # the other ranks must hear of it, not wait for the collective timeout
            error = exc
    if hooks.any_true(error is not None):
        if error is not None:
            raise error
        raise SciMLError(f"the writing rank failed {where} (its log has the reason)")
