"""Visualize component: the plots, as PNG + CSV files and one HTML page for the UI."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Model, Output

from pipekit.pipeline.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def visualize(
    model: Input[Model],
    metadata: Input[Dataset],
    evaluation: Input[Dataset],
    voxel_file: str,
    split: str,
    settings: dict,
    figures: Output[Dataset],
    plots: Output[HTML],
):
    """Plot training curves, predicted vs true, errors, per-temperature r, RMSF profiles and
    the predicted temperature response of one domain.

    Args:
        model: the train output (training history and best_model.pt).
        metadata: the preprocess output.
        evaluation: the evaluate output for the same split.
        voxel_file: URI of the voxel HDF5 or packed store (for the temperature response).
        split: the split that was evaluated.
        settings: further config sections (logging).
        figures: visualizations/*.png and the *_data.csv behind each plot.
        plots: every plot on one HTML page (rendered in the Kubeflow UI).
    """
    from voxelflex import kfp_io
    from voxelflex.steps import visualize as step

    cfg = kfp_io.component_config(
        settings,
        run_dir=figures,
        processed_dir=metadata,
        overrides={"input.voxel_file": voxel_file},
    )
    kfp_io.copy_files(model, figures, ["training_history.json"])
    kfp_io.copy_files(
        evaluation,
        figures,
        [f"metrics/predictions_{split}.csv", f"metrics/evaluation_metrics_{split}.json"],
    )
    result = step.run(cfg, split=split, model=kfp_io.best_model(model))
    kfp_io.copy_uri(result.gallery, plots)
