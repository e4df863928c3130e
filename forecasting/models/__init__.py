"""FCN3-style spherical neural operator: config + presets, layers and the network."""

from sciml.forecasting.models.config import FCN3_PUBLISHED_PARAMETERS, PRESETS, FCN3Config, preset
from sciml.forecasting.models.fcn3 import FCN3, count_parameters, ensemble_step, expected_parameter_count
from sciml.forecasting.models.layers import SerialSphereOps, SphereOps

__all__ = [
    "FCN3",
    "FCN3Config",
    "FCN3_PUBLISHED_PARAMETERS",
    "PRESETS",
    "SerialSphereOps",
    "SphereOps",
    "count_parameters",
    "ensemble_step",
    "expected_parameter_count",
    "preset",
]
