"""Visualize component: the run's report, parity plots and error histograms."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Output

from pipekit.pipeline.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def visualize(
    evaluation: Input[Dataset],
    preprocessed: Input[Dataset],
    split: str,
    settings: dict,
    plots: Output[Dataset],
    report: Output[HTML],
):
    """Plots of a split's predictions, each beside the data it was drawn from.

    Args:
        evaluation: the evaluate output (predictions CSV, evaluation metrics).
        preprocessed: the preprocess output.
        split: the split evaluated.
        settings: the config files.
        plots: visualizations/*.png, *_data.csv and index.html (the report).
        report: the run's report (metrics, baselines, provenance, plots inlined).
    """
    from pipekit.kfp_io import copy_files
    from pipekit.report import read_report
    from rheidae import kfp_io
    from rheidae.steps import visualize as step

    setup = kfp_io.training_setup(settings, preprocessed, plots)
    copy_files(
        evaluation,
        plots,
        [f"metrics/predictions_{split}.csv", f"metrics/evaluation_metrics_{split}.json"],
    )
    res = step.run(setup, split=split)
    with open(report.path, "w") as fh:
        fh.write(read_report(res.folder))
