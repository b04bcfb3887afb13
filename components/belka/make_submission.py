"""make_submission component: submission.csv and the validation evaluation."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from pipekit.pipeline.images import GPU_IMAGE


@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def make_submission(
    molecules: Input[Dataset],
    vocab: Input[Artifact],
    store: Input[Dataset],
    val_store: Input[Dataset],
    model: Input[Model],
    settings: dict,
    submission: Output[Dataset],
    metrics: Output[Metrics],
):
    """Predict every test row; score the validation molecules against the baselines.

    Args:
        molecules: the generate_parquet output (test row ids).
        vocab: the get_vocab output.
        store: the make_dataset output.
        val_store: the create_val_dataset output.
        model: the clf train_model output.
        settings: config sections (evaluation, training.batch_size, ...).
        submission: submission.csv, evaluation_metrics.json, val_predictions.parquet.
        metrics: validation mAP of the model and the baselines, shared and non-shared blocks.
    """
    from belka import kfp_io
    from belka.steps import make_submission as step
    from pipekit.kfp_io import log_metrics

    cfg = kfp_io.component_config(settings, "", submission)
    layout = kfp_io.layout(cfg, molecules=molecules, vocab=vocab, store=store, val_store=val_store)
    res = step.run(cfg, kfp_io.best_model(model), layout)
    log_metrics(
        metrics,
        {
            f"{name}_{group}_map": res.report[name][group]["mean_ap"]
            for name in ("model", "fingerprint_logreg", "prevalence")
            for group in ("shared", "non_shared")
        }
        | {"submission_rows": res.rows},
    )
