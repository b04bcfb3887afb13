"""train_model as a Kubeflow Trainer TrainJob (`pipekit.trainjob`): one mode (mlm, fps or
clf) data-parallel over `num_nodes x gpus_per_node` processes. Every node runs
`torchrun -m belka --config <model>/train_job_config.yaml --step train_model --mode MODE
--resume ...` with the store, validation store, vocabulary and model folder given as URIs in
object storage (each node reads them there); rank 0 writes the model folder, whose history
this step reads back."""

from __future__ import annotations

import json
import math
from typing import Any

from belka.config import SCHEMA, Config
from belka.paths import HISTORY, Layout
from belka.steps.train_model import TrainResult
from pipekit.trainjob import CONFIG_NAME, Cluster, TrainJobFailed, TrainJobSpec, run_job
from pipekit.trainjob import pipeline_spec as _pipeline_spec
from pipekit.uri import join_uri, open_uri, uri_exists


def trainer_command(
    config_uri: str, mode: str, layout: Layout, previous: str | None = None
) -> list[str]:
    """What every node runs: the step command of one GPU, resuming from the model folder's
    latest_model.pt when a restarted job finds one (else from `previous`)."""
    cmd = ["torchrun", "-m", "belka", "--config", config_uri, "--step", "train_model"]
    cmd += ["--mode", mode, "--resume", "--vocab", layout.vocab, "--store", layout.store]
    cmd += ["--val_store", layout.val_store, "--model_dir", layout.model_dir(mode)]
    return cmd + (["--model_path", previous] if previous else [])


def pipeline_spec(
    mode: str, layout: Layout, previous: str | None, image: str, *placement: Any, **named: Any
) -> TrainJobSpec:
    """The TrainJob of the pipeline task whose model artifact is `layout.model_dir(mode)`;
    `placement` as `pipekit.trainjob.pipeline_spec` takes it after the image (num_nodes,
    gpus_per_node, gpu_product, runtime, secret_name, run_id, namespace, forwarded)."""
    run_uri = layout.model_dir(mode)
    command = trainer_command(join_uri(run_uri, CONFIG_NAME), mode, layout, previous)
    return _pipeline_spec("belka", command, run_uri, image, *placement, **named)


def run(
    cfg: Config,
    mode: str,
    layout: Layout,
    spec: TrainJobSpec,
    cluster: Cluster,
    poll_s: float = 30.0,
    timeout_s: float | None = None,
) -> TrainResult:
    """Train `mode` as a TrainJob: write the config where the nodes read it, run the job,
    and read back what rank 0 wrote."""
    out = layout.model_dir(mode)
    SCHEMA.save_resolved(cfg, spec.config_uri)
    run_job(cluster, spec, timeout_s=timeout_s, poll_s=poll_s)
    history_uri = join_uri(out, HISTORY)
    if not uri_exists(history_uri):
        raise TrainJobFailed(f"TrainJob {spec.name} completed but wrote no {history_uri}")
    with open_uri(history_uri, "r") as fh:
        history = json.load(fh)
    finite = [h for h in history if math.isfinite(h["val_loss"])]
    if not finite:
        raise TrainJobFailed(f"TrainJob {spec.name}: no epoch gave a finite validation loss")
    best = min(finite, key=lambda h: h["val_loss"])
    return TrainResult(
        mode,
        out,
        best["epoch"],
        best["val_loss"],
        history[-1]["epoch"],
        history[-1]["samples_per_s"],
        {k: v for k, v in best.items() if k != "epoch"},
    )
