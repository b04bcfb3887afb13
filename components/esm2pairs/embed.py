"""Embed components: ESM-2 embeddings of every protein into the master cache (by URI),
fanned out: a plan, one shard per GPU task, then one merge into the store and index."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Output

from pipekit.pipeline.images import CPU_IMAGE, GPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def embed_plan(shards: int) -> list:
    """The embedding fan-out: one item per shard ({"shard": k, "shards": n}).

    Args:
        shards: how many embed tasks (GPUs) share the sequences the cache lacks.
    """
    from pipekit.shards import shard_specs

    return shard_specs(shards, "embed_shards")


@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def embed_shard(
    proteins: Input[Dataset],
    embeddings_uri: str,
    model_ckpt: str,
    settings: dict,
    shard: dict,
    shard_log: Output[Dataset],
    metrics: Output[Metrics],
):
    """Embed one shard's share of the sequences the master cache lacks into whole part files
    beside the cache (a retried task skips what its killed attempt's parts hold).

    Args:
        proteins: the preprocess output (protein_final.csv).
        embeddings_uri: folder of the master cache.
        model_ckpt: ESM-2 as a hub name or the URI of a model folder.
        settings: config sections (embeddings, sampling, preprocess, logging, ...).
        shard: this task's item of embed_plan ({"shard": k, "shards": n}).
        shard_log: this shard's logs.
        metrics: distinct sequences of the share, already embedded, computed, failed, seq/s.
    """
    from esm2pairs import kfp_io
    from esm2pairs.steps import embed as step
    from pipekit.kfp_io import log_metrics
    from pipekit.shards import shard_of

    cfg = kfp_io.component_config(
        settings,
        {
            "input_file": kfp_io.in_folder(proteins, "protein_final.csv"),
            "embeddings_dir": embeddings_uri,
            "output_dir": shard_log,
        },
        shard_log,
        overrides={"embeddings.model_ckpt": model_ckpt},
    )
    res = step.run_shard(cfg, *shard_of(shard))
    log_metrics(
        metrics,
        {
            "sequences": res.n_sequences,
            "already_embedded": res.n_cached,
            "computed": res.n_computed,
            "failed": res.n_failed,
            "sequences_per_s": res.sequences_per_s,
        },
    )


@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def embed(
    proteins: Input[Dataset],
    embeddings_uri: str,
    model_ckpt: str,
    settings: dict,
    run_info: Output[Dataset],
    metrics: Output[Metrics],
    merge_only: bool = False,
):
    """Compute the embeddings the master cache lacks (each distinct sequence once), or with
    `merge_only` merge the embed shards' parts; then write the index of this run's proteins.

    Args:
        proteins: the preprocess output (protein_final.csv).
        embeddings_uri: folder of the master cache (master_esm2_embeddings.h5/.parquet),
            shared by every run of a virus and data version, e.g. s3://lab/embeddings/flu_a/v1.
        model_ckpt: ESM-2 as a hub name (clusters with internet) or the URI of a model folder.
        settings: config sections (embeddings, sampling, preprocess, logging, ...).
        run_info: sampled_isolates.txt, this run's isolates.
        metrics: distinct sequences, cache hit rate, computed, failed, model calls, seq/s.
        merge_only: embed nothing (the fan-out's last step, no GPU or model needed).
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
    res = step.run(cfg, compute=not merge_only)
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
