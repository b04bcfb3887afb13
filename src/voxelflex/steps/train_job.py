"""VoxelFlex's training as a Kubeflow Trainer TrainJob (`pipekit.trainjob`): its nodes run
`torchrun -m voxelflex train --config <run>/train_job_config.yaml --auto-resume`, and the
result is read back from the run folder rank 0 wrote."""

from __future__ import annotations

import json
import math
from typing import Any

from pipekit.trainjob import (  # noqa: F401 (this step's names, as its callers use them)
    CONFIG_NAME,
    GPU_PRODUCT_LABEL,
    GROUP,
    PLURAL,
    Cluster,
    KubernetesCluster,
    TrainJobFailed,
    TrainJobSpec,
    _log_excerpt,
    failure_report,
    run_job,
    submit,
    trainjob_body,
    wait,
)
from pipekit.trainjob import job_name as _job_name
from pipekit.trainjob import pipeline_spec as _pipeline_spec
from pipekit.uri import open_uri, uri_exists
from voxelflex.config import Config, save_resolved_config
from voxelflex.paths import RunPaths
from voxelflex.steps.train import TrainResult


def job_name(key: str) -> str:
    return _job_name(key, "voxelflex-train")


def trainer_command(config_uri: str) -> list[str]:
    return ["torchrun", "-m", "voxelflex", "train", "--config", config_uri, "--auto-resume"]


def pipeline_spec(run_uri: str, image: str, *placement: Any, **named: Any) -> TrainJobSpec:
    """The TrainJob of the pipeline task whose model artifact lives at `run_uri`; `placement`
    as `pipekit.trainjob.pipeline_spec` takes it after the image."""
    command = trainer_command(run_uri.rstrip("/") + "/" + CONFIG_NAME)
    return _pipeline_spec("voxelflex", command, run_uri, image, *placement, **named)


def run(
    cfg: Config,
    spec: TrainJobSpec,
    cluster: Cluster,
    poll_s: float = 30.0,
    timeout_s: float | None = None,
) -> TrainResult:
    """Train `cfg`'s run as a TrainJob: write the config where the nodes read it (the run
    folder, `spec.config_uri`), run the job, and read back what rank 0 wrote."""
    paths = RunPaths.from_config(cfg)
    save_resolved_config(cfg, spec.config_uri)
    run_job(cluster, spec, timeout_s=timeout_s, poll_s=poll_s)
    if not uri_exists(paths.best_model) or not uri_exists(paths.training_history):
        raise TrainJobFailed(
            f"TrainJob {spec.name} completed but wrote no model at {paths.best_model}"
        )
    with open_uri(paths.training_history, "r") as fh:
        history = json.load(fh)
    scores = [h["val_pearson"] for h in history if math.isfinite(h["val_pearson"])]
    return TrainResult(
        paths.best_model,
        paths.latest_model,
        paths.training_history,
        max(scores, default=float("nan")),
        len(history),
        history[-1] if history else {},
    )
