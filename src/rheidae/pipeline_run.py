"""The Rheidae pipeline run from the three config files through kfp.local."""

from __future__ import annotations

from typing import Any

from pipekit.config import config_to_dict
from pipekit.pipeline.local import LocalRun
from rheidae.config import load_preprocess, load_training

OWNED_KEYS: dict[str, tuple[str, ...]] = {
    "data": ("path",),
    "training": ("output_dir",),
    "checkpoint": ("dir",),
}


def _without(values: dict[str, Any], drop: dict[str, tuple[str, ...]]) -> dict[str, Any]:
    return {
        s: {k: v for k, v in keys.items() if k not in drop.get(s, ()) and v is not None}
        for s, keys in values.items()
    }


def pipeline_arguments(
    pre_process: str | None,
    model: str | None,
    train_parms: str | None,
    overrides: list[str],
    predict_residual: bool,
) -> dict[str, Any]:
    pre = load_preprocess(pre_process)
    setup = load_training(model, train_parms, overrides, predict_residual)
    pre_values = config_to_dict(pre)
    raw_dir = pre_values.pop("input")["raw_dir"]
    pre_values.pop("output")
    return {
        "raw_dir": raw_dir,
        "predict_residual": setup.parms.targets.predict_residual,
        "settings": {
            "pre_process": _without(pre_values, {}),
            "model": _without(config_to_dict(setup.experiment), OWNED_KEYS),
            "train_parms": _without(config_to_dict(setup.parms), OWNED_KEYS),
        },
    }


def publish(
    pre_process: str | None,
    model: str | None,
    train_parms: str | None,
    overrides: list[str],
    run: LocalRun,
) -> str:
    """Copy the run's outputs where the configs say (`output.dir` for the training set,
    `training.output_dir` for the model and its reports), so the step commands and the make
    targets find them; returns the training output folder."""
    from pipekit.pipeline.local import publish_files
    from pipekit.uri import join_uri

    pre = load_preprocess(pre_process)
    setup = load_training(model, train_parms, overrides)
    out = setup.experiment.training.output_dir

    def destination(task: str, rel: str) -> str | None:
        if task == "preprocess":
            return join_uri(pre.output.dir, rel)
        if rel.startswith("checkpoints/"):
            return join_uri(setup.parms.checkpoint.dir, rel.split("/", 1)[1])
        return join_uri(out, rel)

    publish_files(run, destination, join_uri(out, "logs", "rheidae.log"))
    return out


def run_local(
    pre_process: str | None,
    model: str | None,
    train_parms: str | None,
    overrides: list[str],
    predict_residual: bool,
    pipeline_root: str,
    runner: str = "subprocess",
) -> LocalRun:
    from lab_pipelines import pipelines_of
    from pipekit.pipeline import local

    args = pipeline_arguments(pre_process, model, train_parms, overrides, predict_residual)
    func = pipelines_of("rheidae")["rheidae_pipeline"]
    return local.run_local(func, args, pipeline_root, runner=runner)
