"""Train component: the pair classifier on frozen embeddings."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from pipekit.pipeline.images import GPU_IMAGE


@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def train(
    pair_sets: Input[Dataset],
    embeddings_uri: str,
    settings: dict,
    model: Output[Model],
    metrics: Output[Metrics],
):
    """Train with early stopping on validation AUROC; a retried task resumes.

    Args:
        pair_sets: the pairs output (train/val/test_pairs.csv).
        embeddings_uri: folder of the master cache the pairs' embeddings are read from.
        settings: config sections (training, sampling, logging, monitoring, ...).
        model: trained_model.pt (best epoch), models/latest_model.pt, training_history.json.
        metrics: best validation AUROC, its epoch, epochs run, pairs/s.
    """
    from esm2pairs import kfp_io
    from esm2pairs.steps import train as step
    from pipekit.kfp_io import fetch_folder, log_metrics, work_location

    # checkpoints go where a retried task (a fresh pod, an empty output folder) finds them
    work = work_location(model)
    cfg = kfp_io.component_config(
        settings,
        {"pairs_dir": pair_sets, "embeddings_dir": embeddings_uri, "run_dir": work},
        model,
    )
    res = step.run(cfg, resume=True)
    fetch_folder(work, model)  # the launcher uploads the model from its local folder
    log_metrics(
        metrics,
        {
            "best_val_auroc": res.best_val_auroc,
            "best_epoch": res.best_epoch,
            "epochs_run": res.epochs_run,
            "pairs_per_s": res.samples_per_s,
        },
    )
