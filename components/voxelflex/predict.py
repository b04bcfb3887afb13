"""Predict component: per-residue RMSF at any temperatures for every domain of a split."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from pipekit.pipeline.images import GPU_IMAGE


@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def predict(
    model: Input[Model],
    metadata: Input[Dataset],
    voxel_file: str,
    temperatures: list,
    split: str,
    settings: dict,
    predictions: Output[Dataset],
):
    """Predict per-residue RMSF (nm) at each temperature for every domain of a split.

    Args:
        model: the train output; its best_model.pt is used.
        metadata: the preprocess output (which domains and residues each split holds).
        voxel_file: URI of the voxel HDF5 or packed store.
        temperatures: temperatures in kelvin, e.g. [300, 335, 400]; any value works, and
            values outside the training range are predicted with a warning.
        split: train, val or test.
        settings: further config sections (prediction.batch_size, logging).
        predictions: metrics/predictions_<split>_<T…>K.csv with domain_id, resid, resname,
            temperature, predicted_rmsf and target_rmsf where known.
    """
    from voxelflex import kfp_io
    from voxelflex.steps import predict as step

    cfg = kfp_io.component_config(
        settings,
        run_dir=predictions,
        processed_dir=metadata,
        overrides={"input.voxel_file": voxel_file},
    )
    step.run(cfg, [float(t) for t in temperatures], split=split, model=kfp_io.best_model(model))
