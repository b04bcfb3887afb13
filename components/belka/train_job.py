"""Distributed training component: one Belka mode as a Kubeflow Trainer v2 TrainJob."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from pipekit.pipeline.images import CPU_IMAGE
from pipekit.pipeline.tasks import TRAINJOB_PASSTHROUGHS


@dsl.component(
    base_image=CPU_IMAGE,
    install_kfp_package=False,
    task_config_passthroughs=TRAINJOB_PASSTHROUGHS,
)
def train_job(
    store: Input[Dataset],
    val_store: Input[Dataset],
    vocab: Input[Artifact],
    mode: str,
    settings: dict,
    num_nodes: int,
    gpus_per_node: int,
    gpu_product: str,
    runtime: str,
    s3_secret_name: str,
    model: Output[Model],
    metrics: Output[Metrics],
    previous: Input[Model] = None,
    task_config: dsl.TaskConfig = None,
):
    """Train one mode data-parallel as a TrainJob, wait for it, delete it; the model as
    train_model's.

    This pod only orchestrates (CPU, small): the job's num_nodes x gpus_per_node processes
    run `torchrun -m belka --step train_model` on the GPU image, reading the stores and
    writing the model folder in object storage. A failed job fails this step with its
    pods' reasons.

    Args:
        store: the make_dataset output.
        val_store: the create_val_dataset output.
        vocab: the get_vocab output.
        mode: mlm, fps or clf.
        settings: config sections (model, training, system, ...).
        num_nodes: nodes of the TrainJob.
        gpus_per_node: GPUs (one process each) per node.
        gpu_product: nvidia.com/gpu.product of the nodes; empty allows any GPU node.
        runtime: the ClusterTrainingRuntime to use (Kubeflow Trainer's torch-distributed).
        s3_secret_name: secret with the object-store credentials, passed to the nodes.
        model: best_model.pt, latest_model.pt, training_history.json, the job's config.
        metrics: best validation loss, its epoch, epochs run, molecules/s (clf: val mAP).
        previous: the model whose encoder this one starts from (mlm -> fps -> clf).
        task_config: the task's resources, node selector and tolerations (set by KFP).
    """
    from belka import kfp_io
    from belka.steps import train_job as step
    from pipekit.kfp_io import fetch_folder, fsspec_uri, log_metrics
    from pipekit.pipeline.images import GPU_IMAGE
    from pipekit.trainjob import KubernetesCluster

    # every node reads and writes by URI: the artifacts' object-store form, not local paths
    def remote(artifact) -> str:
        return fsspec_uri(artifact.uri).rstrip("/")

    run_uri = remote(model)
    cfg = kfp_io.component_config(settings, "", run_uri, log_folder=model)
    layout = kfp_io.layout(
        cfg,
        store=remote(store),
        val_store=remote(val_store),
        vocab=remote(vocab),
        models={mode: run_uri},
    )
    start = kfp_io.best_model(remote(previous)) if previous is not None else None
    spec = step.pipeline_spec(
        mode,
        layout,
        start,
        GPU_IMAGE,
        num_nodes,
        gpus_per_node,
        gpu_product,
        runtime,
        s3_secret_name,
        run_id=cfg.monitoring.run_id or "",
        forwarded=task_config,
    )
    res = step.run(cfg, mode, layout, spec, KubernetesCluster())
    fetch_folder(run_uri, model)  # the launcher uploads the model from its local path
    log_metrics(metrics, kfp_io.train_metrics(res))
