"""Evaluation gate component: fails the run when per-domain r drops too far."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Output

from voxelflex.components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def evaluation_gate(
    evaluation: Input[Dataset],
    split: str,
    accepted_metrics_uri: str,
    max_drop: float,
    promote: bool,
    settings: dict,
    metrics: Output[Metrics],
):
    """Compare the evaluation with the last accepted metrics; fail on a drop.

    Args:
        evaluation: the evaluate output (metrics/evaluation_metrics_<split>.json).
        split: the split that was evaluated.
        accepted_metrics_uri: URI of the last accepted evaluation_metrics JSON; when absent,
            this run sets the baseline.
        max_drop: largest allowed fall of the mean per-domain Pearson r at any temperature.
        promote: make a passing evaluation the accepted one.
        settings: further config sections (logging).
        metrics: the drop of per-domain r at each temperature (accepted minus now).
    """
    from voxelflex import kfp_io
    from voxelflex.steps import gate as step

    kfp_io.component_config(settings)
    current = step.metrics_file(kfp_io.location(evaluation), split)
    result = step.run(current, accepted_metrics_uri, max_drop, promote)
    kfp_io.log_metrics(metrics, step.headline_metrics(result))
