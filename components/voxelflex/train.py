"""Train component: the model, trained on the preprocessed samples, voxels read on demand."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from pipekit.pipeline.images import GPU_IMAGE


@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def train(
    metadata: Input[Dataset],
    voxel_file: str,
    architecture: str,
    num_epochs: int,
    batch_size: int,
    learning_rate: float,
    settings: dict,
    model: Output[Model],
    metrics: Output[Metrics],
):
    """Train the temperature-aware 3D CNN with early stopping on validation Pearson r.

    Args:
        metadata: the preprocess output (sample metadata and temperature scaling).
        voxel_file: URI of the voxel HDF5 or packed store the metadata was made from.
        architecture: multipath_rmsf_net, densenet3d_regression or dilated_resnet3d.
        num_epochs: most epochs to train (early stopping may end sooner).
        batch_size: samples (residue at one temperature) per step.
        learning_rate: AdamW learning rate.
        settings: further config sections (model, training, prediction, logging).
        model: best_model.pt and latest_model.pt (weights, model config, temperature
            scaling), training_history.json and the training log.
        metrics: best validation Pearson r, epochs run, final losses and samples/s.
    """
    from voxelflex import kfp_io
    from voxelflex.steps import train as step

    # checkpoints go where a retried task (a fresh pod, an empty output folder) finds them,
    # and it resumes from the last one (none on the first attempt: it starts)
    work = kfp_io.work_location(model)
    cfg = kfp_io.component_config(
        settings,
        run_dir=work,
        processed_dir=metadata,
        overrides=kfp_io.training_overrides(
            voxel_file, architecture, num_epochs, batch_size, learning_rate
        ),
        log_folder=model,
    )
    kfp_io.copy_files(metadata, work, ["models/temp_scaling_params.json"])
    result = step.run(cfg, resume="auto")
    kfp_io.fetch_folder(work, model)  # the launcher uploads the model from its local folder
    kfp_io.log_metrics(
        metrics,
        {
            "best_val_pearson": result.best_val_pearson,
            "epochs_run": result.epochs_run,
            **result.last_epoch,
        },
    )
