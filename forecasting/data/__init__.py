"""Forecasting data: ERA5-style readers, the built-in shallow-water dataset, statistics and training samples.

Public API (import from here; modules are split by concern):

- contract: :func:`finalize_canonical`, channel naming (``z500``, ``t2m``, ``u10m``)
- grids: :class:`Grid`, :func:`detect_grid`
- readers: :func:`open_source`, :func:`detect_layout`, :class:`Source`
- stores: :func:`write_store`
- statistics: :class:`StatsConfig`, :func:`compute_stats`, :class:`NormStats`, :func:`stats_path`
- shallow water: :class:`SWEConfig`, :data:`PRESETS`, :func:`simulate`
- training samples: :class:`ForecastDataConfig`, :class:`ForecastDataset`, :class:`Tile`
- specs: :class:`DatasetSpec`, :func:`load_spec`

Nothing heavy is imported at package import time beyond numpy/xarray; torch-harmonics is imported on use.
"""

from .contract import channel_meta, channel_name, finalize_canonical
from .dataset import ForecastDataConfig, ForecastDataset, Tile
from .features import CosZenith, DayOfYear, HourOfDay, cos_zenith, resolve_features
from .grid import Grid, detect_grid
from .readers import LAYOUTS, Source, detect_layout, open_source
from .spec import DatasetSpec, load_spec
from .stats import NormStats, StatsConfig, compute_stats, stats_path
from .store import source_from_dataset, write_store
from .swe import PRESETS, SWEConfig, simulate

__all__ = [
    "LAYOUTS",
    "PRESETS",
    "CosZenith",
    "DatasetSpec",
    "DayOfYear",
    "ForecastDataConfig",
    "ForecastDataset",
    "Grid",
    "HourOfDay",
    "NormStats",
    "SWEConfig",
    "Source",
    "StatsConfig",
    "Tile",
    "channel_meta",
    "channel_name",
    "compute_stats",
    "cos_zenith",
    "detect_grid",
    "detect_layout",
    "finalize_canonical",
    "load_spec",
    "open_source",
    "resolve_features",
    "simulate",
    "source_from_dataset",
    "stats_path",
    "write_store",
]
