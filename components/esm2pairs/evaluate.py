"""Evaluate component: predictions and metrics of a split."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from pipekit.pipeline.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def evaluate(
    model: Input[Model],
    pair_sets: Input[Dataset],
    embeddings_uri: str,
    split: str,
    settings: dict,
    evaluation: Output[Dataset],
    metrics: Output[Metrics],
):
    """Score a split's pairs; AUROC, AUPRC and F1 overall and per segment pair.

    Args:
        model: the train output (trained_model.pt).
        pair_sets: the pairs output.
        embeddings_uri: folder of the master cache.
        split: train, val or test.
        settings: config sections (training, logging, ...).
        evaluation: metrics/predictions_<split>.csv and metrics/evaluation_metrics_<split>.json.
        metrics: overall AUROC, AUPRC and F1.
    """
    from esm2pairs import kfp_io
    from esm2pairs.steps import evaluate as step
    from pipekit.kfp_io import copy_files, log_metrics

    cfg = kfp_io.component_config(
        settings,
        {"pairs_dir": pair_sets, "embeddings_dir": embeddings_uri, "run_dir": evaluation},
        evaluation,
    )
    copy_files(model, evaluation, ["trained_model.pt"])
    res = step.run(cfg, split=split)
    log_metrics(metrics, step.headline(res.metrics))
