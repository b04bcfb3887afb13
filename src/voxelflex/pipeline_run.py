"""VoxelFlex's pipelines run from a config: their parameters, and where a local run's
outputs go so the step commands find them."""

from __future__ import annotations

from typing import Any

from pipekit.config import config_to_dict
from pipekit.errors import ConfigError
from pipekit.pipeline.local import LocalRun, publish_files
from pipekit.uri import join_uri
from voxelflex.config import Config
from voxelflex.paths import TEMP_SCALING, RunPaths

# Config keys that are typed pipeline parameters; everything else travels in `settings`.
TYPED = {
    "model": {"architecture": "architecture"},
    "training": {
        "num_epochs": "num_epochs",
        "batch_size": "batch_size",
        "learning_rate": "learning_rate",
    },
}
SETTINGS_SECTIONS = ("model", "training", "prediction", "logging", "monitoring")
INPUT_URIS = (
    "voxel_file",
    "aggregated_rmsf_file",
    "train_split_file",
    "val_split_file",
    "test_split_file",
)


def settings_of(cfg: Config, typed: bool = False) -> dict[str, Any]:
    """The config sections a pipeline takes as its `settings` parameter (without the keys
    that are typed parameters of their own when `typed`)."""
    raw = config_to_dict(cfg)
    settings: dict[str, Any] = {}
    for section in SETTINGS_SECTIONS:
        values = {
            k: v for k, v in raw[section].items() if not (typed and k in TYPED.get(section, {}))
        }
        # KFP parameters cannot carry null; a key left out takes its (null) default
        settings[section] = {k: v for k, v in values.items() if v is not None}
    return settings


def pipeline_arguments(
    cfg: Config,
    temperatures: list[float] | None = None,
    split: str = "test",
    mirror_uri: str | None = None,
) -> dict[str, Any]:
    """The pipeline's parameters for a config: input URIs and the typed settings as
    parameters, the rest of the model/training/prediction/logging sections as `settings`.
    `mirror_uri` ("" for beside the voxel file) turns the mirror step on."""
    raw = config_to_dict(cfg)
    missing = [k for k in INPUT_URIS if not raw["input"][k]]
    if missing:
        raise ConfigError(f"the pipeline needs input.{missing[0]} in the config")
    args: dict[str, Any] = {k: raw["input"][k] for k in INPUT_URIS}
    args["max_domains"] = raw["input"]["max_domains"] or 0
    for section, keys in TYPED.items():
        for key, param in keys.items():
            args[param] = raw[section][key]
    args["settings"] = settings_of(cfg, typed=True)
    args["eval_split"] = split
    if mirror_uri is not None:
        args["mirror_to_zarr"] = True
        args["mirror_uri"] = mirror_uri
    if temperatures:
        from voxelflex.steps.predict import check_temperatures

        check_temperatures(temperatures)  # before any step runs, not after training
        args["predict_temperatures"] = [float(t) for t in temperatures]
    return args


def publish(cfg: Config, run: LocalRun) -> str:
    """Copy the main pipeline's outputs where the step commands look for them: the config's
    run folder (models, metrics, visualizations, history) and `data.processed_dir` (the
    sample metadata and the scaling fitted on it), so `voxelflex predict|evaluate|visualize
    --config` work after a local pipeline run, and so does `voxelflex train` of another run
    on the same preprocess (a sweep). Each step's log is appended to the run's log. Returns
    the run folder."""
    paths = RunPaths.from_config(cfg)
    processed = {"master_samples.parquet", TEMP_SCALING}  # at the top of preprocess's output

    def destination(task: str, rel: str) -> str:
        base = paths.processed_dir if rel in processed else paths.run_dir
        return join_uri(base, rel)

    publish_files(run, destination, paths.log_file)
    return paths.run_dir


def run_local(
    cfg: Config,
    pipeline_root: str,
    temperatures: list[float] | None = None,
    split: str = "test",
    mirror_uri: str | None = None,
    params: dict[str, Any] | None = None,
    pipeline: str = "voxelflex_pipeline",
    runner: str = "subprocess",
) -> LocalRun:
    """Run one of VoxelFlex's pipelines through `kfp.local`. The main pipeline takes its
    parameters from the config; the others from `params` (plus the config's settings)."""
    from lab_pipelines import WRITES, pipelines_of
    from pipekit.pipeline import local

    pipelines = pipelines_of("voxelflex")
    if pipeline not in pipelines:
        raise ConfigError(f"--pipeline must be one of {sorted(pipelines)}, not {pipeline!r}")
    if pipeline == "voxelflex_pipeline":
        args = {**pipeline_arguments(cfg, temperatures, split, mirror_uri), **(params or {})}
    else:
        args = {"settings": settings_of(cfg), **(params or {})}
    return local.run_local(
        pipelines[pipeline],
        args,
        pipeline_root,
        cfg.input.storage_options,
        runner,
        WRITES.get(pipeline, ()),
    )
