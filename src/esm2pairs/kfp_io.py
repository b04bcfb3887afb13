"""The ESM-2 pipeline's side of the KFP glue: a component's config from its settings and
the locations of its artifacts (the generic helpers are `pipekit.kfp_io`'s)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from esm2pairs.config import Config, config_from_dict
from pipekit.kfp_io import Location, component_settings, location
from pipekit.logging_setup import setup_logging
from pipekit.progress import set_progress
from pipekit.uri import apply_storage_options, join_uri

# The pipeline owns where data and outputs live; a user's settings may not move them.
OWNED_SECTIONS = ("paths",)


def component_config(
    settings: Mapping[str, Any],
    paths: Mapping[str, Location | str],
    log_folder: Location,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Defaults, then `settings`, then `overrides` (typed parameters), then `paths`
    (`{"embeddings_dir": uri, "run_dir": artifact}`); logs to `<log_folder>/logs/`."""
    folder = location(log_folder).rstrip("/")
    values = component_settings(settings, OWNED_SECTIONS, overrides, run_dir=folder)
    values["paths"] = {k: location(v) if not isinstance(v, str) else v for k, v in paths.items()}
    cfg = config_from_dict(values, origin="pipeline settings")
    apply_storage_options(cfg.paths.storage_options)
    setup_logging(cfg.logging.level, join_uri(folder, "logs", "esm2pairs.log"))
    set_progress(cfg.logging.show_progress)
    return cfg


def in_folder(artifact: Location, name: str) -> str:
    return join_uri(location(artifact).rstrip("/"), name)
