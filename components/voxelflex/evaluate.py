"""Evaluate component: metrics, baselines and a report on a held-out split."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Markdown, Metrics, Model, Output

from pipekit.pipeline.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def evaluate(
    model: Input[Model],
    metadata: Input[Dataset],
    voxel_file: str,
    split: str,
    permutation_importance: bool,
    settings: dict,
    evaluation: Output[Dataset],
    metrics: Output[Metrics],
    report: Output[Markdown],
):
    """Evaluate the model on a split against two training-split baselines.

    Args:
        model: the train output; its best_model.pt is evaluated.
        metadata: the preprocess output (samples and targets of each split).
        voxel_file: URI of the voxel HDF5 or packed store.
        split: train, val or test.
        permutation_importance: also measure the RMSE increase when temperature or each
            voxel channel is shuffled (one more pass per feature).
        settings: further config sections (prediction.batch_size, logging).
        evaluation: metrics/evaluation_metrics_<split>.json (overall, per temperature,
            strata, baselines), predictions_<split>.csv and the summary.
        metrics: pooled Pearson, Spearman, RMSE, MAE, R², baseline RMSE and the mean
            per-domain Pearson r at each temperature.
        report: the evaluation summary as Markdown.
    """
    from voxelflex import kfp_io
    from voxelflex.steps import evaluate as step

    cfg = kfp_io.component_config(
        settings,
        run_dir=evaluation,
        processed_dir=metadata,
        overrides={"input.voxel_file": voxel_file},
    )
    result = step.run(
        cfg, split=split, model=kfp_io.best_model(model), permutation=permutation_importance
    )
    kfp_io.copy_uri(result.summary, report)
    kfp_io.log_metrics(metrics, step.headline_metrics(result.report))
