"""Training of the forecasting model: the curriculum training loop and what it is built from.

- :mod:`.config`: the YAML config (frozen dataclasses); :mod:`.resume`: what a resumed run may change;
- :mod:`.data`: the run's datasets, their facts and the batch order; :mod:`.network`: model and noise from the
  config; :mod:`.objective`: each stage's loss;
- :mod:`.hooks`: the rank-dependent choices (serial here, :mod:`sciml.forecasting.distributed.hooks` on a mesh);
- :mod:`.trainer`: the loop. Checkpoints are :mod:`sciml.forecasting.checkpoint`.
"""

from sciml.forecasting.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint

from .config import StageConfig, TrainConfig, load_train_config, resolve_config_path
from .hooks import TrainHooks
from .trainer import MetricsLog, NonFiniteError, Trainer, lr_factor

__all__ = [
    "CHECKPOINT_NAME",
    "MetricsLog",
    "NonFiniteError",
    "StageConfig",
    "TrainConfig",
    "TrainHooks",
    "Trainer",
    "load_checkpoint",
    "load_train_config",
    "lr_factor",
    "resolve_config_path",
    "save_checkpoint",
]
