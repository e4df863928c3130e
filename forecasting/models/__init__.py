"""FCN3-style spherical neural operator: config + presets, layers and the network.

Names resolve lazily (:mod:`sciml.lazy`): the config and presets (``models.config``) import nothing heavy, while the
network and its layers import torch-harmonics (seconds of start-up), so they are loaded only when first used.
"""

from sciml.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "config": ("FCN3_PUBLISHED_PARAMETERS", "PRESETS", "FCN3Config", "preset"),
        "fcn3": ("FCN3", "count_parameters", "ensemble_step", "expected_parameter_count"),
        "layers": ("SerialSphereOps", "SphereOps"),
    },
)
