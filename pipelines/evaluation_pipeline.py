"""Scheduled evaluation: evaluate an existing model and fail when it got worse.

The model comes in by URI (the train step's Model artifact folder, holding
models/best_model.pt); the gate compares per-domain r at each temperature with the last
accepted metrics file and fails the run on a drop larger than `max_drop`.
"""

from kfp import dsl

from voxelflex.pipelines.voxelflex_pipeline import (
    S3_SECRET,
    evaluate_step,
    gate_step,
    preprocess_step,
)

PIPELINE_NAME = "voxelflex-evaluation"


@dsl.pipeline(
    name=PIPELINE_NAME,
    description="Evaluate a trained VoxelFlex model on a split and gate on per-domain r "
    "against the last accepted metrics.",
)
def voxelflex_evaluation_pipeline(
    model_uri: str,
    voxel_file: str,
    aggregated_rmsf_file: str,
    train_split_file: str,
    val_split_file: str,
    test_split_file: str,
    accepted_metrics_uri: str,
    eval_split: str = "test",
    max_drop: float = 0.05,
    promote: bool = True,
    max_domains: int = 0,
    s3_secret_name: str = S3_SECRET,
    settings: dict = {},  # noqa: B006 (KFP reads the default)
):
    """Evaluate a model and compare it with the accepted metrics.

    Args:
        model_uri: URI of a train output folder (holding models/best_model.pt).
        voxel_file: URI of the voxel HDF5 or packed store.
        aggregated_rmsf_file: URI of the RMSF CSV.
        train_split_file: URI of the training domain list (for the baselines).
        val_split_file: URI of the validation domain list.
        test_split_file: URI of the test domain list.
        accepted_metrics_uri: URI of the last accepted evaluation_metrics JSON; a passing run
            replaces it when promote is on, the first run creates it.
        eval_split: split to evaluate (train, val or test).
        max_drop: largest allowed fall of the mean per-domain r at any temperature.
        promote: make a passing evaluation the accepted one.
        max_domains: keep at most this many domains per split; 0 keeps all.
        s3_secret_name: Kubernetes secret with the object-store credentials.
        settings: further config sections merged over the defaults.
    """
    model = dsl.importer(artifact_uri=model_uri, artifact_class=dsl.Model, reimport=False)
    prep = preprocess_step(
        voxel_file,
        aggregated_rmsf_file,
        train_split_file,
        val_split_file,
        test_split_file,
        max_domains,
        settings,
        s3_secret_name,
    )
    evaluated = evaluate_step(
        model.output,
        prep.outputs["metadata"],
        voxel_file,
        eval_split,
        False,
        settings,
        s3_secret_name,
    )
    gate_step(
        evaluated, eval_split, accepted_metrics_uri, max_drop, promote, settings, s3_secret_name
    )
