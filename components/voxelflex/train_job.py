"""Distributed training component: a Kubeflow Trainer v2 TrainJob over several GPUs/nodes."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from pipekit.pipeline.images import CPU_IMAGE
from pipekit.pipeline.tasks import TRAINJOB_PASSTHROUGHS


@dsl.component(
    base_image=CPU_IMAGE,
    install_kfp_package=False,
    task_config_passthroughs=TRAINJOB_PASSTHROUGHS,
)
def train_job(
    metadata: Input[Dataset],
    voxel_file: str,
    architecture: str,
    num_epochs: int,
    batch_size: int,
    learning_rate: float,
    settings: dict,
    num_nodes: int,
    gpus_per_node: int,
    gpu_product: str,
    runtime: str,
    s3_secret_name: str,
    model: Output[Model],
    metrics: Output[Metrics],
    task_config: dsl.TaskConfig = None,
):
    """Train data-parallel as a TrainJob, wait for it, delete it; the model as train's.

    This pod only orchestrates (CPU, small): the job's num_nodes x gpus_per_node processes
    run `torchrun -m voxelflex train` on the GPU image, reading the metadata and writing the
    model folder in object storage. A failed job fails this step with its pods' reasons.

    Args:
        metadata: the preprocess output (sample metadata and temperature scaling).
        voxel_file: URI of the voxel HDF5 or packed store the metadata was made from.
        architecture: multipath_rmsf_net, densenet3d_regression or dilated_resnet3d.
        num_epochs: most epochs to train (early stopping may end sooner).
        batch_size: samples per step on each GPU (the global batch is this x all GPUs).
        learning_rate: AdamW learning rate.
        settings: further config sections (model, training, prediction, logging).
        num_nodes: nodes of the TrainJob.
        gpus_per_node: GPUs (one process each) per node.
        gpu_product: nvidia.com/gpu.product of the nodes; empty allows any GPU node.
        runtime: the ClusterTrainingRuntime to use (Kubeflow Trainer's torch-distributed).
        s3_secret_name: secret with the object-store credentials, passed to the nodes.
        model: best_model.pt and latest_model.pt, training_history.json, the job's config.
        metrics: best validation Pearson r, epochs run, final losses and samples/s.
        task_config: the task's resources, node selector and tolerations (set by KFP).
    """
    from pipekit.pipeline.images import GPU_IMAGE
    from voxelflex import kfp_io
    from voxelflex.steps import train_job as step

    # every node reads and writes by URI: the artifacts' object-store form, not local paths
    run_uri = kfp_io.fsspec_uri(model.uri)
    cfg = kfp_io.component_config(
        settings,
        run_dir=run_uri,
        processed_dir=kfp_io.fsspec_uri(metadata.uri),
        overrides=kfp_io.training_overrides(
            voxel_file, architecture, num_epochs, batch_size, learning_rate
        ),
    )
    kfp_io.copy_files(metadata, run_uri, ["models/temp_scaling_params.json"])
    spec = step.pipeline_spec(
        run_uri,
        GPU_IMAGE,
        num_nodes,
        gpus_per_node,
        gpu_product,
        runtime,
        s3_secret_name,
        run_id=cfg.monitoring.run_id or "",
        forwarded=task_config,
    )
    result = step.run(cfg, spec, step.KubernetesCluster())
    kfp_io.fetch_folder(run_uri, model)  # the launcher uploads the model from its local path
    kfp_io.log_metrics(
        metrics,
        {
            "best_val_pearson": result.best_val_pearson,
            "epochs_run": result.epochs_run,
            **result.last_epoch,
        },
    )
