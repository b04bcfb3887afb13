"""Config: packaged defaults + user YAML + `--set` overrides -> typed, frozen dataclasses."""

from voxelflex.config.load import (
    config_from_dict,
    config_to_dict,
    load_config,
    parse_overrides,
    save_resolved_config,
)
from voxelflex.config.schema import (
    Config,
    DataConfig,
    InputConfig,
    LoggingConfig,
    ModelConfig,
    MonitoringConfig,
    OutputConfig,
    PredictionConfig,
    TrainingConfig,
)

__all__ = [
    "Config",
    "DataConfig",
    "InputConfig",
    "LoggingConfig",
    "ModelConfig",
    "MonitoringConfig",
    "OutputConfig",
    "PredictionConfig",
    "TrainingConfig",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "parse_overrides",
    "save_resolved_config",
]
