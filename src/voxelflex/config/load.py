"""VoxelFlex's config schema: its dataclasses, packaged defaults and path keys."""

from __future__ import annotations

import typing
from typing import Any

from pipekit.config import ConfigSchema, config_to_dict, parse_overrides
from voxelflex.config.schema import Config

# Keys holding paths or URIs (relative local paths follow the config file's folder).
PATH_KEYS = (
    "input.voxel_file",
    "input.aggregated_rmsf_file",
    "input.train_split_file",
    "input.val_split_file",
    "input.test_split_file",
    "data.processed_dir",
    "output.base_dir",
)
SCHEMA = ConfigSchema(Config, "voxelflex.config", PATH_KEYS)


def load_config(path: str | None = None, overrides: typing.Sequence[str] = ()) -> Config:
    """Defaults, then the YAML at `path`, then `section.key=value` overrides; validated."""
    return SCHEMA.load(path, overrides)


def config_from_dict(values: typing.Mapping[str, Any], origin: str = "settings") -> Config:
    """Defaults, then `values` (config sections as a mapping, e.g. a pipeline parameter)."""
    return SCHEMA.from_dict(values, origin)


def save_resolved_config(cfg: Config, path: str) -> None:
    """Write the config a run really used (credentials masked)."""
    SCHEMA.save_resolved(cfg, path)


__all__ = ["config_from_dict", "config_to_dict", "load_config", "parse_overrides"]
