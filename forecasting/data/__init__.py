"""Forecasting data: ERA5-style readers, the built-in shallow-water dataset, statistics and training samples.

Public API (import from here; modules are split by concern):

- contract: :func:`finalize_canonical`, channel naming (``z500``, ``t2m``, ``u10m``)
- grids: :class:`Grid`, :func:`detect_grid`
- readers: :func:`open_source`, :func:`detect_layout`, :class:`Source`
- stores: :func:`write_store`
- statistics: :class:`StatsConfig`, :func:`compute_stats`, :class:`NormStats`, :func:`stats_path`
- shallow water: :class:`SWEConfig`, :data:`PRESETS`, :func:`simulate`
- training samples: :class:`DataConfig` (the ``data`` section), :class:`ForecastDataset`, :class:`Tile`,
  :func:`batch_loader`, :func:`to_device`
- specs: :class:`DatasetSpec`, :func:`load_spec`

Nothing is imported at package import time: names resolve lazily (PEP 562), so ``sciml --help`` and the CLI's
argument set-up never pay for torch or xarray.
"""

from sciml.lazy import lazy_exports

_EXPORTS = {
    "contract": ("channel_meta", "channel_name", "finalize_canonical"),
    "config": ("DataConfig",),
    "dataset": ("ForecastDataset", "Tile"),
    "features": ("CosZenith", "DayOfYear", "HourOfDay", "cos_zenith", "resolve_features"),
    "grid": ("Grid", "detect_grid"),
    "layouts": ("LAYOUTS",),
    "loader": ("StepBatches", "batch_loader", "to_device"),
    "readers": ("Source", "detect_layout", "open_source"),
    "spec": ("DatasetSpec", "load_spec"),
    "stats": ("NormStats", "StatsConfig", "compute_stats", "stats_path"),
    "store": ("source_from_dataset", "write_store"),
    "swe": ("PRESETS", "SWEConfig", "simulate"),
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
