"""Train component: the residual model."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from pipekit.pipeline.images import GPU_IMAGE


@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def train(
    preprocessed: Input[Dataset],
    predict_residual: bool,
    settings: dict,
    model: Output[Model],
    metrics: Output[Metrics],
):
    """Train with the configured loss weighting (and PCGrad); a retried task resumes.

    Args:
        preprocessed: the preprocess output (preprocessed_all.h5).
        predict_residual: learn F_true - F_box instead of F_true.
        settings: the config files as {"pre_process": ..., "model": ..., "train_parms": ...}.
        model: best_model.pt, training_history.json, checkpoints/, resolved configs.
        metrics: best validation MSE, its epoch, epochs run, samples/s.
    """
    from pipekit.kfp_io import fetch_folder, log_metrics, work_location
    from rheidae import kfp_io
    from rheidae.steps import train as step

    # checkpoints go where a retried task (a fresh pod, an empty output folder) finds them
    work = work_location(model)
    setup = kfp_io.training_setup(settings, preprocessed, work, predict_residual, model)
    res = step.run(setup, resume=True)
    fetch_folder(work, model)  # the launcher uploads the model from its local folder
    log_metrics(
        metrics,
        {
            "best_val_mse": res.best_val_accuracy,
            "best_epoch": res.best_epoch,
            "epochs_run": res.epochs_run,
            "samples_per_s": res.samples_per_s,
        },
    )
