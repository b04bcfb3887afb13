"""Config: packaged defaults + a bundle or YAML + `--set` overrides -> typed dataclasses."""

from __future__ import annotations

import typing
from importlib import resources
from typing import Any

from esm2pairs.config.schema import Config
from pipekit.config import ConfigSchema, config_to_dict
from pipekit.errors import ConfigError

PATH_KEYS = (
    "paths.data_dir",
    "paths.raw_protein_file",
    "paths.input_file",
    "paths.embeddings_dir",
    "paths.output_dir",
    "paths.pairs_dir",
    "paths.run_dir",
)
SCHEMA = ConfigSchema(Config, "esm2pairs.config", PATH_KEYS)


def bundle_path(name: str) -> str:
    """A packaged config bundle (`flu_a`, `demo`) by name, or a YAML file by path."""
    if name.endswith((".yaml", ".yml")) or "/" in name:
        return name
    bundle = resources.files("esm2pairs.config").joinpath("bundles", f"{name}.yaml")
    if not bundle.is_file():
        known = sorted(
            p.name.removesuffix(".yaml")
            for p in resources.files("esm2pairs.config").joinpath("bundles").iterdir()
        )
        raise ConfigError(f"--config_bundle {name!r} is not a bundle; known: {known}")
    return str(bundle)


def load_config(path: str | None = None, overrides: typing.Sequence[str] = ()) -> Config:
    """Defaults, then the YAML at `path` (or a bundle name), then overrides; validated."""
    return SCHEMA.load(bundle_path(path) if path else None, overrides)


def config_from_dict(values: typing.Mapping[str, Any], origin: str = "settings") -> Config:
    return SCHEMA.from_dict(values, origin)


__all__ = ["Config", "config_from_dict", "config_to_dict", "load_config"]
