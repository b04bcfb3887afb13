"""VoxelFlex's side of the KFP glue: a component's config, its run folder, its model.

The artifact helpers every pipeline uses (`location`, `copy_files`, `log_metrics`, ...) are
`pipekit.kfp_io`'s; they are importable from here too, as the components call them.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from typing import Any

from pipekit.kfp_io import (
    Location,
    component_settings,
    copy_files,
    copy_uri,
    fetch_folder,
    fsspec_uri,
    local_folder,
    location,
    log_metrics,
    work_location,
)
from pipekit.logging_setup import setup_logging
from pipekit.progress import set_progress
from pipekit.uri import apply_storage_options, join_uri
from voxelflex.config import Config, config_from_dict
from voxelflex.paths import RunPaths

__all__ = [
    "OWNED_SECTIONS",
    "best_model",
    "component_config",
    "copy_files",
    "copy_uri",
    "fetch_folder",
    "fsspec_uri",
    "join_uri",
    "local_folder",
    "location",
    "log_metrics",
    "training_overrides",
    "work_location",
]

# The pipeline owns where data and outputs live; a user's settings may not move them.
OWNED_SECTIONS = ("input", "data", "output")


def component_config(
    settings: Mapping[str, Any],
    run_dir: Location | None = None,
    processed_dir: Location | None = None,
    overrides: Mapping[str, Any] | None = None,
    log_folder: Location | None = None,
) -> Config:
    """Config for one component: defaults, then `settings` (config sections), then
    `overrides` (`{"input.voxel_file": uri, "training.batch_size": 64}`: the component's typed
    parameters), then the artifact locations.

    `run_dir` (the component's output artifact, or where it works: `work_location`) becomes
    `output.base_dir/output.run_name`; `processed_dir` (the preprocess artifact) holds
    `master_samples.parquet`. Logging goes to the console and the run's log file, or
    `<log_folder>/logs/voxelflex.log` (console only for a step without a run folder).
    """
    run_dir = location(run_dir).rstrip("/") if run_dir is not None else None
    values = component_settings(settings, OWNED_SECTIONS, overrides, run_dir)
    if run_dir is not None:
        values["data"] = {"processed_dir": location(processed_dir) if processed_dir else run_dir}
        values["output"] = {
            "base_dir": posixpath.dirname(run_dir),
            "run_name": posixpath.basename(run_dir),
        }
    cfg = config_from_dict(values, origin="pipeline settings")
    apply_storage_options(cfg.input.storage_options)
    log_file = RunPaths.from_config(cfg).log_file if run_dir is not None else None
    if log_folder is not None:
        log_file = join_uri(location(log_folder).rstrip("/"), "logs", "voxelflex.log")
    setup_logging(cfg.logging.level, log_file)
    set_progress(cfg.logging.show_progress)
    return cfg


def training_overrides(
    voxel_file: str, architecture: str, num_epochs: int, batch_size: int, learning_rate: float
) -> dict[str, Any]:
    """The training components' typed parameters as config overrides."""
    return {
        "input.voxel_file": voxel_file,
        "model.architecture": architecture,
        "training.num_epochs": num_epochs,
        "training.batch_size": batch_size,
        "training.learning_rate": learning_rate,
    }


def best_model(model: Location) -> str:
    """The checkpoint inside a Model artifact written by the train component (a run folder)."""
    return RunPaths(run_dir=location(model).rstrip("/"), processed_dir="").best_model
