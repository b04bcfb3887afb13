"""Evaluate component: the model against Box3D alone on the held-out split."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from pipekit.pipeline.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def evaluate(
    model: Input[Model],
    preprocessed: Input[Dataset],
    split: str,
    settings: dict,
    evaluation: Output[Dataset],
    metrics: Output[Metrics],
):
    """Errors per component and overall, conservation violations, growth-rate strata.

    Args:
        model: the train output (best_model.pt).
        preprocessed: the preprocess output.
        split: train, val or test.
        settings: the config files as {"pre_process": ..., "model": ..., "train_parms": ...}.
        evaluation: metrics/evaluation_metrics_<split>.json and predictions_<split>.csv.
        metrics: model and Box3D mean relative error, the ratio, the largest violation.
    """
    from pipekit.kfp_io import copy_files, log_metrics
    from rheidae import kfp_io
    from rheidae.steps import evaluate as step

    setup = kfp_io.training_setup(settings, preprocessed, evaluation)
    copy_files(model, evaluation, ["best_model.pt"])
    res = step.run(setup, split=split)
    log_metrics(metrics, step.headline(res.report))
