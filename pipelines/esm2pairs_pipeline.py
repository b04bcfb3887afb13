"""The ESM-2 pipeline: preprocess -> embed (plan, one shard per GPU, merge) -> pairs -> train
-> evaluate -> visualize.

One definition for the Kubeflow UI (`pipelines/compiled/esm2pairs_pipeline.yaml`) and a
laptop (`esm2pairs pipeline run --local`). The master cache is passed by URI: it outlives
runs, and each run adds only what it lacks. Embed and train run on the GPU nodes, with the
same settings VoxelFlex's GPU steps use.
"""

from kfp import dsl

from esm2pairs.components import (
    embed,
    embed_plan,
    embed_shard,
    evaluate,
    pairs,
    preprocess,
    train,
    visualize,
)
from pipekit.pipeline.gpu import gpu_node_selector
from pipekit.pipeline.tasks import (
    DEFAULT_GPU_PRODUCT,
    S3_SECRET,
    configure,
    on_gpu,
    scraped,
)

# (cpu request, cpu limit, memory request, memory limit) per step
RESOURCES = {
    "preprocess": ("1", "2", "4Gi", "8Gi"),
    "embed_plan": ("100m", "500m", "256Mi", "1Gi"),
    "embed": ("4", "8", "24Gi", "32Gi"),  # a shard: the 650M model and one batch
    "embed_merge": ("2", "4", "8Gi", "16Gi"),  # the store rewritten in slices
    "pairs": ("1", "2", "4Gi", "8Gi"),
    "train": ("4", "8", "16Gi", "24Gi"),
    "evaluate": ("2", "4", "8Gi", "16Gi"),
    "visualize": ("1", "2", "2Gi", "4Gi"),
    "gpu_node_selector": ("100m", "500m", "256Mi", "1Gi"),
}
DETERMINISTIC = {"gpu_node_selector", "embed_plan"}


def _step(task: dsl.PipelineTask, step: str, secret_name) -> dsl.PipelineTask:
    return configure(task, RESOURCES[step], step not in DETERMINISTIC, secret_name)


@dsl.pipeline(name="esm2pairs", description="ESM-2 embedding cache and segment-pair classifier")
def esm2pairs_pipeline(
    raw_protein_file: str,
    embeddings_uri: str,
    model_ckpt: str = "facebook/esm2_t33_650M_UR50D",
    settings: dict = {},  # noqa: B006 (KFP reads the default)
    eval_split: str = "test",
    gpu_product: str = DEFAULT_GPU_PRODUCT,
    s3_secret_name: str = S3_SECRET,
    embed_shards: int = 1,
):
    """Embed proteins into the master cache and train a classifier on frozen embeddings.

    Args:
        raw_protein_file: URI of the raw protein table (brc_fea_id, assembly_id, prot_seq,
            function, ...).
        embeddings_uri: folder of the master cache for this virus and data version.
        model_ckpt: ESM-2 as a hub name or the URI of a mirrored model folder.
        settings: config sections (virus, sampling, preprocess, embeddings, dataset,
            training, logging, monitoring) as a mapping.
        eval_split: the split evaluate and visualize report on.
        gpu_product: nvidia.com/gpu.product label of the GPU nodes for embed and train.
        s3_secret_name: Kubernetes secret with the object store's credentials.
        embed_shards: embed tasks side by side, one GPU each; each embeds its share of the
            sequences the cache lacks, and one step then merges them into the cache.
    """
    selector = _step(gpu_node_selector(gpu_product=gpu_product), "gpu_node_selector", None)
    prep = _step(
        preprocess(raw_protein_file=raw_protein_file, settings=settings),
        "preprocess",
        s3_secret_name,
    )
    planned = _step(embed_plan(shards=embed_shards), "embed_plan", None)
    with dsl.ParallelFor(planned.output) as shard:
        part = embed_shard(
            proteins=prep.outputs["proteins"],
            embeddings_uri=embeddings_uri,
            model_ckpt=model_ckpt,
            settings=settings,
            shard=shard,
        )
        on_gpu(scraped(_step(part, "embed", s3_secret_name)), selector)
    emb = embed(
        proteins=prep.outputs["proteins"],
        embeddings_uri=embeddings_uri,
        model_ckpt=model_ckpt,
        settings=settings,
        merge_only=True,
    )
    _step(emb, "embed_merge", s3_secret_name).after(part)
    pairs_task = _step(
        pairs(
            proteins=prep.outputs["proteins"],
            run_info=emb.outputs["run_info"],
            embeddings_uri=embeddings_uri,
            settings=settings,
        ),
        "pairs",
        s3_secret_name,
    )
    trained = train(
        pair_sets=pairs_task.outputs["pair_sets"],
        embeddings_uri=embeddings_uri,
        settings=settings,
    )
    on_gpu(scraped(_step(trained, "train", s3_secret_name)), selector)
    evaluated = _step(
        evaluate(
            model=trained.outputs["model"],
            pair_sets=pairs_task.outputs["pair_sets"],
            embeddings_uri=embeddings_uri,
            split=eval_split,
            settings=settings,
        ),
        "evaluate",
        s3_secret_name,
    )
    _step(
        visualize(evaluation=evaluated.outputs["evaluation"], split=eval_split, settings=settings),
        "visualize",
        s3_secret_name,
    )
