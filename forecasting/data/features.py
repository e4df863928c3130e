r"""Time features: solar geometry and calendar encodings shared by the training samples and the climatology.

Each feature is a small object with ``names`` and ``__call__(times, lat, lon) -> [T, F, nlat, nlon]`` float32,
so the Dataset takes a tuple of feature objects (strategy objects, resolved from names once at the config
boundary with :func:`resolve_features`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from sciml.errors import UsageError

YEAR_DAYS = 365.25


def fractional_day_of_year(times: pd.DatetimeIndex | np.ndarray) -> np.ndarray:
    """Day of year counted from 0 at 1 January 00 UTC, with the time of day as a fraction."""
    t = pd.DatetimeIndex(times)
    return (t.day_of_year - 1).to_numpy(np.float64) + (t.hour * 3600 + t.minute * 60 + t.second).to_numpy() / 86400.0


def solar_declination_and_eot(times: pd.DatetimeIndex | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""Solar declination :math:`\delta` (radians) and equation of time (minutes), NOAA Fourier series.

    .. math::
        \gamma = \tfrac{2\pi}{365}\,(d - 1 + (h-12)/24),\quad
        \delta = 0.006918 - 0.399912\cos\gamma + 0.070257\sin\gamma - 0.006758\cos 2\gamma
                 + 0.000907\sin 2\gamma - 0.002697\cos 3\gamma + 0.00148\sin 3\gamma

    (Spencer 1971, as used by NOAA's solar calculator); accurate to ~0.05 degrees and ~0.5 minutes.
    """
    t = pd.DatetimeIndex(times)
    hour = (t.hour + t.minute / 60 + t.second / 3600).to_numpy(np.float64)
    g = 2 * np.pi / 365.0 * ((t.day_of_year - 1).to_numpy(np.float64) + (hour - 12) / 24)
    decl = (
        0.006918
        - 0.399912 * np.cos(g)
        + 0.070257 * np.sin(g)
        - 0.006758 * np.cos(2 * g)
        + 0.000907 * np.sin(2 * g)
        - 0.002697 * np.cos(3 * g)
        + 0.00148 * np.sin(3 * g)
    )
    eot = 229.18 * (
        0.000075 + 0.001868 * np.cos(g) - 0.032077 * np.sin(g) - 0.014615 * np.cos(2 * g) - 0.040849 * np.sin(2 * g)
    )
    return decl, eot


def cos_zenith(times: pd.DatetimeIndex | np.ndarray, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    r"""Cosine of the solar zenith angle ``[T, nlat, nlon]`` (negative at night).

    .. math:: \cos z = \sin\varphi\sin\delta + \cos\varphi\cos\delta\cos h,\qquad
              h = \big(\text{UTC minutes} + \text{EoT} + 4\lambda\big)/4 - 180^\circ
    """
    t = pd.DatetimeIndex(times)
    decl, eot = solar_declination_and_eot(t)
    minutes = (t.hour * 60 + t.minute + t.second / 60).to_numpy(np.float64)
    lam = np.asarray(lon, dtype=np.float64)
    phi = np.radians(np.asarray(lat, dtype=np.float64))
    h = np.radians((minutes[:, None] + eot[:, None] + 4.0 * lam[None, :]) / 4.0 - 180.0)  # [T, nlon]
    return (
        np.sin(phi)[None, :, None] * np.sin(decl)[:, None, None]
        + np.cos(phi)[None, :, None] * np.cos(decl)[:, None, None] * np.cos(h)[:, None, :]
    )


def harmonic_design(times: pd.DatetimeIndex | np.ndarray, harmonics: int, diurnal: bool) -> np.ndarray:
    r"""Regressors of the climatology: :math:`[1, \cos k\omega d, \sin k\omega d\,(k\le K), \cos, \sin(2\pi h/24)]`.

    :math:`\omega = 2\pi/365.25` per day, :math:`d` the fractional day of year, :math:`h` the UTC hour.
    Returns ``[T, F]`` float64 with ``F = 1 + 2K + 2*diurnal``.
    """
    d = fractional_day_of_year(times)
    cols = [np.ones_like(d)]
    for k in range(1, harmonics + 1):
        cols += [np.cos(2 * np.pi * k * d / YEAR_DAYS), np.sin(2 * np.pi * k * d / YEAR_DAYS)]
    if diurnal:
        frac = d - np.floor(d)
        cols += [np.cos(2 * np.pi * frac), np.sin(2 * np.pi * frac)]
    return np.stack(cols, axis=1)


@dataclass(frozen=True)
class CosZenith:
    """One channel: cosine of the solar zenith angle at each grid point (FCN3's ``xzen``)."""

    @property
    def names(self) -> tuple[str, ...]:
        return ("cos_zenith",)

    def __call__(self, times: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        return cos_zenith(times, lat, lon)[:, None].astype(np.float32)


@dataclass(frozen=True)
class DayOfYear:
    """Two channels, constant in space: cos and sin of :math:`2\\pi d/365.25`."""

    @property
    def names(self) -> tuple[str, ...]:
        return ("doy_cos", "doy_sin")

    def __call__(self, times: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        x = 2 * np.pi * fractional_day_of_year(times) / YEAR_DAYS
        v = np.stack([np.cos(x), np.sin(x)], axis=1).astype(np.float32)
        return np.broadcast_to(v[:, :, None, None], (v.shape[0], 2, len(lat), len(lon))).copy()


@dataclass(frozen=True)
class HourOfDay:
    """Two channels, constant in space: cos and sin of :math:`2\\pi h/24` (UTC)."""

    @property
    def names(self) -> tuple[str, ...]:
        return ("hour_cos", "hour_sin")

    def __call__(self, times: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        d = fractional_day_of_year(times)
        x = 2 * np.pi * (d - np.floor(d))
        v = np.stack([np.cos(x), np.sin(x)], axis=1).astype(np.float32)
        return np.broadcast_to(v[:, :, None, None], (v.shape[0], 2, len(lat), len(lon))).copy()


FEATURES = {"cos_zenith": CosZenith, "day_of_year": DayOfYear, "hour_of_day": HourOfDay}


def resolve_features(names: tuple[str, ...] | list[str]) -> tuple:
    """Feature names (config/YAML) -> feature objects."""
    out = []
    for n in names:
        if n not in FEATURES:
            raise UsageError(f"unknown time feature {n!r}; choose from {sorted(FEATURES)}")
        out.append(FEATURES[n]())
    return tuple(out)
