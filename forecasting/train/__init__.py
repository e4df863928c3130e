"""Training of the forecasting model: config, checkpoints, the curriculum training loop."""

from .checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from .components import TrainHooks
from .config import StageConfig, TrainConfig, load_train_config, resolve_config_path
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
