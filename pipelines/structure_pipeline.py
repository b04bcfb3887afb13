"""Structure to prediction: a trained model and a list of PDB/mmCIF URIs in; per-residue
RMSF at each temperature, profiles and B-factor-coloured structures out."""

from kfp import dsl

from lab_pipelines.voxelflex_pipeline import S3_SECRET, configure_step, fingerprint_step
from voxelflex.components import predict_structures, voxelize_structures

PIPELINE_NAME = "voxelflex-structure-prediction"


@dsl.pipeline(
    name=PIPELINE_NAME,
    description="Predict per-residue flexibility (RMSF) of your own structures at any "
    "temperatures with a trained VoxelFlex model.",
)
def voxelflex_structure_pipeline(
    model_uri: str,
    structures: list,
    temperatures: list = [300.0, 350.0, 400.0],  # noqa: B006 (KFP reads the default)
    s3_secret_name: str = S3_SECRET,
    settings: dict = {},  # noqa: B006
):
    """Voxelize the structures, then predict their per-residue RMSF (on CPU: a handful of
    structures takes seconds; the image is the CUDA one, so a GPU is used where the pod has one).

    Args:
        model_uri: URI of a train output folder (holding models/best_model.pt).
        structures: URIs of PDB or mmCIF files (plain or .gz), e.g. ["s3://lab/my.pdb"].
        temperatures: temperatures in kelvin to predict at.
        s3_secret_name: Kubernetes secret with the object-store credentials.
        settings: further config sections merged over the defaults.
    """
    model = dsl.importer(artifact_uri=model_uri, artifact_class=dsl.Model, reimport=False)
    held = fingerprint_step(structures, settings, s3_secret_name)  # the cache key's content part
    voxels = configure_step(
        voxelize_structures(
            structures=structures, settings=settings, inputs_fingerprint=held.output
        ),
        "voxelize_structures",
        s3_secret_name,
        cache=True,
    )
    configure_step(
        predict_structures(
            model=model.output,
            voxels=voxels.outputs["voxels"],
            structures=structures,
            temperatures=temperatures,
            settings=settings,
        ),
        "predict_structures",
        s3_secret_name,
    )
