"""The Belka pipeline run from a config: its parameters, and where a local run's outputs go
(`data.working`, as the step commands lay it out), so `belka --step ...` finds them."""

from __future__ import annotations

from typing import Any

from belka.config import Config, config_to_dict, load_config
from belka.kfp_io import OWNED_KEYS
from belka.paths import VOCAB, Layout
from pipekit.pipeline.local import LocalRun, publish_files

# kfp.local names repeated components' tasks -2, -3 in the order the pipeline adds them
TRAIN_TASKS = {"train-model": "mlm", "train-model-2": "fps", "train-model-3": "clf"}


def pipeline_arguments(cfg: Config) -> dict[str, Any]:
    values = config_to_dict(cfg)
    owned = {k.split(".")[1] for k in OWNED_KEYS}
    values["data"] = {k: v for k, v in values["data"].items() if k not in owned}
    settings = {s: {k: v for k, v in keys.items() if v is not None} for s, keys in values.items()}
    return {"raw_dir": Layout.of(cfg).root, "settings": settings}


def run_local(
    config: str | None, overrides: list[str], pipeline_root: str, runner: str = "subprocess"
) -> LocalRun:
    from lab_pipelines import pipelines_of
    from pipekit.pipeline import local

    cfg = load_config(config, overrides)
    func = pipelines_of("belka")["belka_pipeline"]
    storage = {"s3": cfg.data.storage_options} if cfg.data.storage_options else None
    return local.run_local(func, pipeline_arguments(cfg), pipeline_root, storage, runner)


def publish(config: str | None, overrides: list[str], run: LocalRun) -> str:
    """Copy each step's outputs into `data.working`; returns that folder."""
    layout = Layout.of(load_config(config, overrides))

    def destination(task: str, rel: str) -> str | None:
        if task.startswith("make-dataset-part"):  # their shards are in the gathered store
            return None
        if task in TRAIN_TASKS:
            return f"{layout.model_dir(TRAIN_TASKS[task])}/{rel}"
        if task == "get-vocab" and rel == VOCAB:
            return layout.vocab
        return layout.out(rel)

    publish_files(run, destination, layout.log)
    return layout.working
