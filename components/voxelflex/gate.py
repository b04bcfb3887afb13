"""Evaluation gate component: fails the run when per-domain r drops too far."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from pipekit.pipeline.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def evaluation_gate(
    evaluation: Input[Dataset],
    model: Input[Model],
    split: str,
    accepted_metrics_uri: str,
    max_drop: float,
    promote: bool,
    run_id: str,
    model_registry_url: str,
    settings: dict,
    metrics: Output[Metrics],
):
    """Compare the evaluation with the pinned baseline of the promotion record; fail on a
    drop; on a pass, record the model as the accepted one (one atomic write).

    Args:
        evaluation: the evaluate output (metrics/evaluation_metrics_<split>.json).
        model: the evaluated model (its URI is what promotion records).
        split: the split that was evaluated.
        accepted_metrics_uri: URI of the promotion record (accepted model, pinned baseline,
            best so far); when absent, this run's model becomes the baseline.
        max_drop: largest allowed fall of the mean per-domain Pearson r at any temperature.
        promote: record a passing model as the accepted one.
        run_id: the pipeline run (recorded with the model).
        model_registry_url: a Kubeflow Model Registry (http(s)://host:port) to register a
            promoted model in; empty: none.
        settings: further config sections (logging).
        metrics: the drop of per-domain r at each temperature (baseline minus now).
    """
    from voxelflex import kfp_io
    from voxelflex.steps import gate as step

    kfp_io.component_config(settings)
    current = step.metrics_file(kfp_io.location(evaluation), split)
    result = step.run(
        current,
        accepted_metrics_uri,
        max_drop,
        promote,
        model_uri=model.uri,
        run_id=run_id,
        registry_url=model_registry_url or None,
    )
    kfp_io.log_metrics(metrics, step.headline_metrics(result))


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def model_to_evaluate(model_uri: str, accepted_metrics_uri: str, settings: dict) -> str:
    """The model a scheduled evaluation evaluates: the one given, else the accepted one.

    Args:
        model_uri: URI of a train output folder; empty for the accepted model.
        accepted_metrics_uri: URI of the promotion record naming the accepted model.
        settings: further config sections (input.storage_options, logging).

    Returns:
        The model URI.
    """
    from voxelflex import kfp_io
    from voxelflex.steps import gate as step

    kfp_io.component_config(settings)
    return model_uri or step.accepted_model(accepted_metrics_uri)
