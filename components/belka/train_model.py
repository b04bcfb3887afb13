"""train_model component: one mode (mlm, fps or clf) of the Belka encoder."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from pipekit.pipeline.images import GPU_IMAGE


@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def train_model(
    store: Input[Dataset],
    val_store: Input[Dataset],
    vocab: Input[Artifact],
    mode: str,
    settings: dict,
    model: Output[Model],
    metrics: Output[Metrics],
    previous: Input[Model] = None,
):
    """Train with early stopping; a retried task resumes from its latest_model.pt.

    Args:
        store: the make_dataset output.
        val_store: the create_val_dataset output.
        vocab: the get_vocab output.
        mode: mlm (masked tokens), fps (ECFP bits) or clf (binding to BRD4, HSA, sEH).
        settings: config sections (model, training, system, ...).
        model: best_model.pt, latest_model.pt, training_history.json, resolved_config.yaml.
        metrics: best validation loss, its epoch, epochs run, molecules/s (clf: val mAP).
        previous: the model whose encoder this one starts from (mlm -> fps -> clf).
    """
    from belka import kfp_io
    from belka.steps import train_model as step
    from pipekit.kfp_io import fetch_folder, log_metrics, work_location

    # checkpoints go where a retried task (a fresh pod, an empty output folder) finds them
    work = work_location(model)
    cfg = kfp_io.component_config(settings, "", work, log_folder=model)
    layout = kfp_io.layout(cfg, store=store, val_store=val_store, vocab=vocab, models={mode: work})
    start = kfp_io.best_model(previous) if previous is not None else None
    res = step.run(cfg, mode, model_path=start, resume=True, layout=layout)
    fetch_folder(work, model)  # the launcher uploads the model from its local folder
    log_metrics(metrics, kfp_io.train_metrics(res))
