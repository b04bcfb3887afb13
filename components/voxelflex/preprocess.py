"""Preprocess component: voxel keys + RMSF CSV + splits -> the sample metadata."""

from kfp import dsl
from kfp.dsl import Dataset, Metrics, Output

from pipekit.pipeline.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def preprocess(
    voxel_file: str,
    aggregated_rmsf_file: str,
    train_split_file: str,
    val_split_file: str,
    test_split_file: str,
    max_domains: int,
    settings: dict,
    inputs_fingerprint: str,
    metadata: Output[Dataset],
    metrics: Output[Metrics],
):
    """Join the voxel file's residues with the RMSF rows and the splits (metadata only).

    Args:
        voxel_file: URI of the voxel HDF5 (aposteriori layout) or packed store.
        aggregated_rmsf_file: URI of the RMSF CSV (domain_id, resid, resname,
            temperature_feature, target_rmsf).
        train_split_file: URI of the training domain list, one ID per line.
        val_split_file: URI of the validation domain list.
        test_split_file: URI of the test domain list.
        max_domains: keep at most this many domains per split; 0 keeps all.
        settings: further config sections (model, training, prediction, logging).
        inputs_fingerprint: what the input files hold (the fingerprint step's digest): part
            of the cache key only, so a changed input is never served from the cache.
        metadata: master_samples.parquet, temperature scaling (training split only) and
            failed_preprocess_domains.txt.
        metrics: sample, residue and skipped-record counts.
    """
    from voxelflex import kfp_io
    from voxelflex.steps import preprocess as step

    cfg = kfp_io.component_config(
        settings,
        run_dir=metadata,
        overrides={
            "input.voxel_file": voxel_file,
            "input.aggregated_rmsf_file": aggregated_rmsf_file,
            "input.train_split_file": train_split_file,
            "input.val_split_file": val_split_file,
            "input.test_split_file": test_split_file,
            "input.max_domains": max_domains or None,
        },
    )
    result = step.run(cfg)
    kfp_io.log_metrics(
        metrics, {"samples": result.n_samples, "residues": result.n_residues, **result.counts}
    )
