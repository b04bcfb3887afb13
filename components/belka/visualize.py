"""visualize component: precision-recall curves, AP bars, training curves."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Model, Output

from pipekit.pipeline.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def visualize(
    submission: Input[Dataset],
    mlm: Input[Model],
    fps: Input[Model],
    clf: Input[Model],
    settings: dict,
    plots: Output[Dataset],
    report: Output[HTML],
):
    """Plot the evaluation and the three training histories.

    Args:
        submission: the make_submission output (evaluation_metrics.json, val_predictions).
        mlm: the mlm train_model output.
        fps: the fps train_model output.
        clf: the clf train_model output.
        settings: config sections (logging, ...).
        plots: visualizations/*.png with the *_data.csv behind each, index.html.
        report: the run's report (metrics, baselines, provenance, plots inlined).
    """
    from belka import kfp_io
    from belka.paths import EVALUATION, VAL_PREDICTIONS
    from belka.steps import visualize as step
    from pipekit.kfp_io import copy_files
    from pipekit.report import read_report

    cfg = kfp_io.component_config(settings, "", plots)
    copy_files(submission, plots, [EVALUATION, VAL_PREDICTIONS])
    layout = kfp_io.layout(cfg, models={"mlm": mlm, "fps": fps, "clf": clf})
    res = step.run(cfg, layout)
    with open(report.path, "w") as fh:
        fh.write(read_report(res.folder))
