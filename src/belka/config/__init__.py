"""Config: packaged `config.yaml` + the user's YAML + `--set` overrides + the plan's flags."""

from __future__ import annotations

import typing

from belka.config.schema import MODES, Config
from pipekit.config import ConfigSchema, config_to_dict

SCHEMA = ConfigSchema(
    Config, "belka.config", ("data.root", "data.working", "data.vocab"), "config.yaml"
)


def load_config(path: str | None = None, overrides: typing.Sequence[str] = ()) -> Config:
    return SCHEMA.load(path, overrides)


__all__ = ["MODES", "SCHEMA", "Config", "config_to_dict", "load_config"]
