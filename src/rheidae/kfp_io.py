"""Rheidae's side of the KFP glue. A component's `settings` holds the three config files
as `{"pre_process": {...}, "model": {...}, "train_parms": {...}}`; the pipeline's artifacts
say where data and outputs live, so settings may not."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipekit.errors import ConfigError
from pipekit.kfp_io import Location, component_settings, location
from pipekit.logging_setup import setup_logging
from pipekit.progress import set_progress
from pipekit.uri import join_uri
from rheidae.config import EXPERIMENT, PREPROCESS, TRAIN_PARMS, TrainSetup
from rheidae.config.schema import PreprocessConfig

FILES = ("pre_process", "model", "train_parms")
# keys the pipeline sets from its artifacts (per file)
OWNED = {"pre_process": ("input", "output"), "model": (), "train_parms": ()}


def _file(settings: Mapping[str, Any], name: str, run_dir: str | None) -> dict[str, Any]:
    unknown = sorted(set(settings) - set(FILES))
    if unknown:
        raise ConfigError(f"pipeline settings {unknown} are not config files; use {FILES}")
    return component_settings(settings.get(name, {}), OWNED[name], run_dir=run_dir)


def _set(values: dict[str, Any], dotted: str, value: Any) -> None:
    section, key = dotted.split(".")
    if key in values.get(section, {}) and dotted in (
        "data.path",
        "training.output_dir",
        "checkpoint.dir",
    ):
        raise ConfigError(f"pipeline settings may not set {dotted}: the artifacts say where it is")
    values.setdefault(section, {})[key] = value


def preprocess_config(settings: Mapping[str, Any], raw_dir: str, out: Location) -> PreprocessConfig:
    values = _file(settings, "pre_process", None)
    values["input"] = {"raw_dir": raw_dir}
    values["output"] = {"dir": location(out).rstrip("/")}
    cfg = PREPROCESS.from_dict(values, "pipeline settings")
    setup_logging(cfg.logging.level, join_uri(cfg.output.dir, "logs", "rheidae.log"))
    set_progress(cfg.logging.show_progress)
    return cfg


def training_setup(
    settings: Mapping[str, Any],
    data: Location,
    out: Location,
    predict_residual: bool | None = None,
    log_folder: Location | None = None,
) -> TrainSetup:
    """The training config for `out` (the model artifact, or where the step works:
    `pipekit.kfp_io.work_location`); the log goes to `<log_folder or out>/logs/`."""
    out_dir = location(out).rstrip("/")
    model = _file(settings, "model", out_dir)
    parms = _file(settings, "train_parms", None)
    _set(model, "data.path", join_uri(location(data).rstrip("/"), "preprocessed_all.h5"))
    _set(model, "training.output_dir", out_dir)
    # checkpoints beside the model: a retried task finds its own there and resumes
    _set(parms, "checkpoint.dir", join_uri(out_dir, "checkpoints"))
    if predict_residual is not None:
        parms.setdefault("targets", {})["predict_residual"] = predict_residual
    exp = EXPERIMENT.from_dict(model, "pipeline settings")
    setup = TrainSetup(exp, TRAIN_PARMS.from_dict(parms, "pipeline settings"))
    logs = location(log_folder).rstrip("/") if log_folder is not None else out_dir
    setup_logging(exp.logging.level, join_uri(logs, "logs", "rheidae.log"))
    set_progress(exp.logging.show_progress)
    return setup
