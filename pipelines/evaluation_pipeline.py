"""Scheduled evaluation: evaluate a model (by default the accepted one) and fail when it got
worse than the pinned baseline.

The model comes in by URI (a train step's Model artifact folder, holding
models/best_model.pt), or, with `model_uri` left empty, as the model the promotion record
says is accepted; the gate compares per-domain r at each temperature with the record's
pinned baseline and fails the run on a drop larger than `max_drop`.
"""

from kfp import dsl

from lab_pipelines.voxelflex_pipeline import (
    S3_SECRET,
    configure_step,
    evaluate_step,
    gate_step,
    preprocess_step,
)
from voxelflex.components import model_to_evaluate

PIPELINE_NAME = "voxelflex-evaluation"


@dsl.pipeline(
    name=PIPELINE_NAME,
    description="Evaluate a trained VoxelFlex model on a split and gate on per-domain r "
    "against the last accepted metrics.",
)
def voxelflex_evaluation_pipeline(
    voxel_file: str,
    aggregated_rmsf_file: str,
    train_split_file: str,
    val_split_file: str,
    test_split_file: str,
    accepted_metrics_uri: str,
    model_uri: str = "",
    eval_split: str = "test",
    max_drop: float = 0.05,
    promote: bool = True,
    model_registry_url: str = "",
    max_domains: int = 0,
    s3_secret_name: str = S3_SECRET,
    settings: dict = {},  # noqa: B006 (KFP reads the default)
):
    """Evaluate a model and compare it with the accepted metrics.

    Args:
        model_uri: URI of a train output folder (holding models/best_model.pt); empty: the
            accepted model of the promotion record.
        voxel_file: URI of the voxel HDF5 or packed store.
        aggregated_rmsf_file: URI of the RMSF CSV.
        train_split_file: URI of the training domain list (for the baselines).
        val_split_file: URI of the validation domain list.
        test_split_file: URI of the test domain list.
        accepted_metrics_uri: URI of the promotion record (accepted model, pinned baseline);
            the first run creates it.
        eval_split: split to evaluate (train, val or test).
        max_drop: largest allowed fall of the mean per-domain r at any temperature.
        promote: make a passing evaluation the accepted one.
        model_registry_url: a Kubeflow Model Registry (http(s)://host:port) to register a
            promoted model in; empty: none.
        max_domains: keep at most this many domains per split; 0 keeps all.
        s3_secret_name: Kubernetes secret with the object-store credentials.
        settings: further config sections merged over the defaults.
    """
    chosen = configure_step(
        model_to_evaluate(
            model_uri=model_uri, accepted_metrics_uri=accepted_metrics_uri, settings=settings
        ),
        "model_to_evaluate",
        s3_secret_name,
    )
    model = dsl.importer(artifact_uri=chosen.output, artifact_class=dsl.Model, reimport=False)
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
        evaluated,
        model.output,
        eval_split,
        accepted_metrics_uri,
        max_drop,
        promote,
        model_registry_url,
        settings,
        s3_secret_name,
    )
