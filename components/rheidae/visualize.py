"""Visualize component: parity plots and error histograms."""

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
        evaluation: the evaluate output (predictions CSV).
        preprocessed: the preprocess output.
        split: the split evaluated.
        settings: the config files.
        plots: visualizations/*.png, *_data.csv and index.html.
        report: the index page with the plots inlined, for the Kubeflow UI.
    """
    from pipekit.kfp_io import copy_files
    from pipekit.plots import inlined_index
    from rheidae import kfp_io
    from rheidae.steps import visualize as step

    setup = kfp_io.training_setup(settings, preprocessed, plots)
    copy_files(evaluation, plots, [f"metrics/predictions_{split}.csv"])
    res = step.run(setup, split=split)
    with open(report.path, "w") as fh:
        fh.write(inlined_index(res.folder))
