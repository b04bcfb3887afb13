"""Structure-to-prediction components: voxelize a user's structures, then predict for them."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Model, Output

from pipekit.pipeline.images import CPU_IMAGE, GPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def voxelize_structures(
    structures: list, settings: dict, inputs_fingerprint: str, voxels: Output[Dataset]
):
    """Voxelize PDB/mmCIF structures into aposteriori-layout frames.

    Args:
        structures: URIs of PDB or mmCIF files (plain or .gz).
        settings: further config sections (logging).
        inputs_fingerprint: what the structure files hold (the fingerprint step's digest):
            part of the cache key only.
        voxels: voxels.hdf5 (file[structure][chain][resid]) and voxels.hdf5.skipped.txt.
    """
    from voxelflex import kfp_io
    from voxelflex.steps import voxelize as step

    kfp_io.component_config(settings)
    with kfp_io.local_folder(voxels) as folder:
        step.run(structures, kfp_io.join_uri(folder, step.VOXEL_FILE))


@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def predict_structures(
    model: Input[Model],
    voxels: Input[Dataset],
    structures: list,
    temperatures: list,
    settings: dict,
    predictions: Output[Dataset],
    plots: Output[HTML],
):
    """Predict per-residue RMSF at each temperature for the voxelized structures.

    Args:
        model: a train output (its models/best_model.pt).
        voxels: the voxelize_structures output for the same structures.
        structures: the same structure URIs (residue names, B-factor copies).
        temperatures: temperatures in kelvin.
        settings: further config sections (prediction.batch_size, logging).
        predictions: predictions_structures.csv, a profile PNG per chain and one structure
            per temperature with the predicted RMSF (A) in the B-factor column.
        plots: the profiles on one HTML page.
    """
    from voxelflex import kfp_io
    from voxelflex.steps import predict_structure as step

    cfg = kfp_io.component_config(settings)
    with kfp_io.local_folder(predictions) as folder:
        result = step.run(
            cfg,
            structures,
            [float(t) for t in temperatures],
            model=kfp_io.best_model(model),
            out_dir=folder,
            voxels=kfp_io.location(voxels),
        )
        step.write_gallery(result, kfp_io.location(plots))
