"""The ESM-2 pipeline run from a config: its parameters, and where a local run's outputs go
(the canonical folders), so the step commands find them afterwards."""

from __future__ import annotations

import re
from typing import Any

from esm2pairs.config import Config, config_to_dict
from esm2pairs.paths import STEP_FOLDER, Layout
from pipekit.pipeline.local import LocalRun, publish_files
from pipekit.uri import join_uri

PARAMETERS = ("model_ckpt", "shards")  # embeddings keys the pipeline takes as parameters
SETTINGS_SECTIONS = (
    "virus",
    "sampling",
    "preprocess",
    "embeddings",
    "dataset",
    "training",
    "logging",
    "monitoring",
    "report",
)


def pipeline_arguments(cfg: Config) -> dict[str, Any]:
    layout = Layout.from_config(cfg)
    raw = config_to_dict(cfg)
    settings = {
        s: {k: v for k, v in raw[s].items() if v is not None and k not in PARAMETERS}
        for s in SETTINGS_SECTIONS
    }
    return {
        "raw_protein_file": layout.raw_protein_file,
        "embeddings_uri": layout.embeddings_dir,
        "model_ckpt": cfg.embeddings.model_ckpt,
        "settings": settings,
        "embed_shards": cfg.embeddings.shards,
    }


def run_local(cfg: Config, pipeline_root: str, runner: str = "subprocess") -> LocalRun:
    from lab_pipelines import WRITES, pipelines_of
    from pipekit.pipeline import local

    func = pipelines_of("esm2pairs")["esm2pairs_pipeline"]
    return local.run_local(
        func,
        pipeline_arguments(cfg),
        pipeline_root,
        cfg.paths.storage_options,
        runner,
        WRITES["esm2pairs_pipeline"],
    )


def publish(cfg: Config, run: LocalRun) -> str:
    """Copy each step's outputs into the config's folders; returns the run folder."""
    layout = Layout.from_config(cfg)

    def destination(task: str, rel: str) -> str | None:
        # kfp.local names a task by its component (embed-shard, a helper, is not published)
        folder = STEP_FOLDER.get(re.sub(r"-\d+$", "", task))
        return join_uri(getattr(layout, folder), rel) if folder else None

    publish_files(run, destination, layout.log_file(layout.run_dir))
    return layout.run_dir
