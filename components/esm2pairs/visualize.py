"""Visualize component: ROC/PR curves and score distributions."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Output

from pipekit.pipeline.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def visualize(
    evaluation: Input[Dataset],
    split: str,
    settings: dict,
    plots: Output[Dataset],
    report: Output[HTML],
):
    """Plots of a split's predictions, each beside the data it was drawn from.

    Args:
        evaluation: the evaluate output (predictions CSV).
        split: the split evaluated.
        settings: config sections (logging, ...).
        plots: visualizations/*.png, *_data.csv and index.html.
        report: the run's report (metrics, baselines, provenance, plots inlined).
    """
    from esm2pairs import kfp_io
    from esm2pairs.steps import visualize as step
    from pipekit.kfp_io import copy_files
    from pipekit.report import read_report

    cfg = kfp_io.component_config(settings, {"run_dir": plots}, plots)
    copy_files(
        evaluation,
        plots,
        [f"metrics/predictions_{split}.csv", f"metrics/evaluation_metrics_{split}.json"],
    )
    res = step.run(cfg, split=split)
    with open(report.path, "w") as fh:
        fh.write(read_report(res.folder))
