"""Embed component: ESM-2 embeddings of every protein into the master cache (by URI)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Output

from pipekit.pipeline.images import GPU_IMAGE


@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def embed(
    proteins: Input[Dataset],
    embeddings_uri: str,
    model_ckpt: str,
    settings: dict,
    run_info: Output[Dataset],
    metrics: Output[Metrics],
):
    """Compute the embeddings the master cache lacks (each distinct sequence once).

    Args:
        proteins: the preprocess output (protein_final.csv).
        embeddings_uri: folder of the master cache (master_esm2_embeddings.h5/.parquet),
            shared by every run of a virus and data version, e.g. s3://lab/embeddings/flu_a/v1.
        model_ckpt: ESM-2 as a hub name (clusters with internet) or the URI of a model folder.
        settings: config sections (embeddings, sampling, preprocess, logging, ...).
        run_info: sampled_isolates.txt, this run's isolates.
        metrics: distinct sequences, cache hit rate, computed, failed, model calls, seq/s.
    """
    from esm2pairs import kfp_io
    from esm2pairs.steps import embed as step
    from pipekit.kfp_io import log_metrics, same_task

    # the cache is written in place (by URI): a retried task keeps what its killed attempt
    # finished, taking over that attempt's hold on the cache at once
    same_task(run_info)

    cfg = kfp_io.component_config(
        settings,
        {
            "input_file": kfp_io.in_folder(proteins, "protein_final.csv"),
            "embeddings_dir": embeddings_uri,
            "output_dir": run_info,
        },
        run_info,
        overrides={"embeddings.model_ckpt": model_ckpt},
    )
    res = step.run(cfg)
    log_metrics(
        metrics,
        {
            "sequences": res.n_sequences,
            "cache_hit_rate": res.hit_rate,
            "computed": res.n_computed,
            "failed": res.n_failed,
            "model_calls": res.model_calls,
            "sequences_per_s": res.sequences_per_s,
        },
    )
