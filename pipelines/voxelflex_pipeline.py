"""The VoxelFlex pipeline: [mirror] -> preprocess -> train -> predict / evaluate -> visualize.

One definition for the Kubeflow UI (compiled to `pipelines/compiled/voxelflex_pipeline.yaml`)
and for a laptop (`voxelflex pipeline run --local`, through `kfp.local`). Kubernetes settings
(GPU, node selector, tolerations, /dev/shm, secrets) live in the compiled YAML's platform
spec; `kfp.local` ignores them.
"""

from kfp import dsl

from pipekit.pipeline.tasks import (
    DEFAULT_GPU_PRODUCT,
    DEFAULT_TRAINER_RUNTIME,
    S3_SECRET,
    configure,
    on_gpu,
    on_gpus,
    scraped,
)
from voxelflex.components import (
    evaluate,
    evaluation_gate,
    fingerprint_inputs,
    gpu_node_selector,
    mirror,
    mirror_plan,
    mirror_shard,
    original_voxels,
    predict,
    preprocess,
    train,
    train_job,
    visualize,
)

PIPELINE_NAME = "voxelflex"
MIRROR_PARALLELISM = 8  # mirror writers running at once (KFP fixes this at compile time)

# (cpu request, cpu limit, memory request, memory limit) per step
RESOURCES = {
    "preprocess": ("2", "4", "8Gi", "16Gi"),
    "train": ("8", "8", "32Gi", "48Gi"),
    "train_job": ("8", "8", "32Gi", "48Gi"),  # per TrainJob node (forwarded, see on_gpus)
    "predict": ("4", "8", "16Gi", "32Gi"),
    "evaluate": ("4", "8", "16Gi", "32Gi"),
    "visualize": ("2", "4", "8Gi", "16Gi"),
    "mirror": ("2", "4", "4Gi", "8Gi"),  # streaming: one chunk and one domain in memory
    "mirror_plan": ("1", "2", "4Gi", "8Gi"),
    "gpu_node_selector": ("100m", "500m", "256Mi", "1Gi"),
    "original_voxels": ("100m", "500m", "256Mi", "1Gi"),
    "evaluation_gate": ("100m", "1", "512Mi", "2Gi"),
    "fingerprint_inputs": ("100m", "1", "512Mi", "2Gi"),
    "model_to_evaluate": ("100m", "500m", "256Mi", "1Gi"),
    "voxelize_structures": ("1", "2", "2Gi", "4Gi"),
    "predict_structures": ("2", "4", "4Gi", "8Gi"),
}
# steps whose failure cannot be transient (they read a few parameters or a small file and
# decide): a retry would only repeat the same answer three times, minutes apart
DETERMINISTIC = {"evaluation_gate", "gpu_node_selector", "original_voxels"}


def configure_step(
    task: dsl.PipelineTask, step: str, secret_name: str | None, cache: bool = False
) -> dsl.PipelineTask:
    """Resources, retries (not for steps that cannot fail transiently), caching and (steps
    that read data) S3 credentials."""
    return configure(task, RESOURCES[step], step not in DETERMINISTIC, secret_name, cache)


def fingerprint_step(uris: list, settings, secret_name) -> dsl.PipelineTask:
    """What `uris` hold now, for a cached step's key; never cached itself."""
    return configure_step(
        fingerprint_inputs(uris=uris, settings=settings), "fingerprint_inputs", secret_name
    )


def preprocess_step(
    voxel_file,
    aggregated_rmsf_file,
    train_split_file,
    val_split_file,
    test_split_file,
    max_domains,
    settings,
    secret_name,
    source_voxel_file=None,
) -> dsl.PipelineTask:
    """The preprocess task every pipeline that evaluates or trains starts from, cached on
    what its inputs hold (their fingerprint), not only on their URIs. `source_voxel_file`:
    the voxel file a mirror was made from, fingerprinted where `voxel_file` is the choice
    between mirror and original (a dsl.OneOf goes into no list)."""
    inputs = [source_voxel_file or voxel_file, aggregated_rmsf_file]
    inputs += [train_split_file, val_split_file, test_split_file]
    return configure_step(
        preprocess(
            voxel_file=voxel_file,
            aggregated_rmsf_file=aggregated_rmsf_file,
            train_split_file=train_split_file,
            val_split_file=val_split_file,
            test_split_file=test_split_file,
            max_domains=max_domains,
            settings=settings,
            inputs_fingerprint=fingerprint_step(inputs, settings, secret_name).output,
        ),
        "preprocess",
        secret_name,
        cache=True,
    )


def evaluate_step(
    model, metadata, voxel_file, split, permutation_importance, settings, secret
) -> dsl.PipelineTask:
    """The evaluate task, its metrics scraped."""
    return scraped(
        configure_step(
            evaluate(
                model=model,
                metadata=metadata,
                voxel_file=voxel_file,
                split=split,
                permutation_importance=permutation_importance,
                settings=settings,
            ),
            "evaluate",
            secret,
        )
    )


def gate_step(
    evaluated: dsl.PipelineTask,
    model,
    split,
    accepted_metrics_uri,
    max_drop,
    promote,
    model_registry_url,
    settings,
    secret,
) -> dsl.PipelineTask:
    """The evaluation gate on an evaluate task's metrics; a pass promotes `model` (and
    registers it in the Model Registry when `model_registry_url` is set)."""
    return configure_step(
        evaluation_gate(
            evaluation=evaluated.outputs["evaluation"],
            model=model,
            split=split,
            accepted_metrics_uri=accepted_metrics_uri,
            max_drop=max_drop,
            promote=promote,
            run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
            model_registry_url=model_registry_url,
            settings=settings,
        ),
        "evaluation_gate",
        secret,
    )


def use_model(
    model,
    metadata,
    voxels,
    selector: dsl.PipelineTask,
    temperatures,
    split,
    permutation_importance,
    accepted_metrics_uri,
    max_drop,
    model_registry_url,
    settings,
    secret,
) -> None:
    """Predict (on a GPU), evaluate, gate when asked, and visualize a trained model."""
    predicted = configure_step(
        predict(
            model=model,
            metadata=metadata,
            voxel_file=voxels,
            temperatures=temperatures,
            split=split,
            settings=settings,
        ),
        "predict",
        secret,
    )
    on_gpu(predicted, selector)
    scraped(predicted)
    evaluated = evaluate_step(
        model, metadata, voxels, split, permutation_importance, settings, secret
    )
    with dsl.If(accepted_metrics_uri != ""):
        gate_step(
            evaluated,
            model,
            split,
            accepted_metrics_uri,
            max_drop,
            True,
            model_registry_url,
            settings,
            secret,
        )
    configure_step(
        visualize(
            model=model,
            metadata=metadata,
            evaluation=evaluated.outputs["evaluation"],
            voxel_file=voxels,
            split=split,
            settings=settings,
        ),
        "visualize",
        secret,
    )


def voxel_source(voxel_file, mirror_to_zarr, mirror_uri, mirror_writers, settings, secret):
    """The voxels the run reads: the packed mirror when asked, else the voxel file."""
    with dsl.If(mirror_to_zarr == True):  # noqa: E712 (a pipeline condition, not Python)
        # plan (list once, write the index) -> writers on disjoint runs of chunks -> finish
        # (anything missing, verification, complete)
        planned = configure_step(
            mirror_plan(
                voxel_file=voxel_file,
                mirror_uri=mirror_uri,
                writers=mirror_writers,
                settings=settings,
            ),
            "mirror_plan",
            secret,
        )
        with dsl.ParallelFor(planned.output, parallelism=MIRROR_PARALLELISM) as shard:
            written = configure_step(
                mirror_shard(
                    voxel_file=voxel_file, mirror_uri=mirror_uri, shard=shard, settings=settings
                ),
                "mirror",
                secret,
            )
        mirrored = configure_step(
            mirror(voxel_file=voxel_file, mirror_uri=mirror_uri, settings=settings),
            "mirror",
            secret,
        ).after(written)
    with dsl.Else():
        original = configure_step(original_voxels(voxel_file=voxel_file), "original_voxels", None)
    return dsl.OneOf(mirrored.outputs["Output"], original.output)


def train_and_use(
    training: dict,
    after: tuple,
    distributed_training,
    num_nodes,
    gpus_per_node,
    gpu_product,
    trainer_runtime,
    secret,
) -> None:
    """Train on one GPU, or as a TrainJob; predict, evaluate, [gate,] visualize follow either
    trainer inside its branch (kfp.local cannot pick a model artifact out of dsl.OneOf)."""
    selector = after[2]
    # the default first, so its tasks keep their plain names (train, predict, ...)
    with dsl.If(distributed_training == False):  # noqa: E712
        single = configure_step(train(**training), "train", secret)
        on_gpu(single, selector)
        scraped(single)
        use_model(single.outputs["model"], *after)
    with dsl.Else():
        job = configure_step(
            train_job(
                **training,
                num_nodes=num_nodes,
                gpus_per_node=gpus_per_node,
                gpu_product=gpu_product,
                runtime=trainer_runtime,
                s3_secret_name=secret,
            ),
            "train_job",
            secret,
        )
        on_gpus(job, selector, gpus_per_node)
        use_model(job.outputs["model"], *after)


@dsl.pipeline(
    name=PIPELINE_NAME,
    description="Train VoxelFlex on voxelized residues and RMSF targets, then predict, "
    "evaluate and plot. Inputs are URIs (s3://, gs://, or paths the pods can read).",
)
def voxelflex_pipeline(
    voxel_file: str,
    aggregated_rmsf_file: str,
    train_split_file: str,
    val_split_file: str,
    test_split_file: str,
    mirror_to_zarr: bool = False,
    mirror_uri: str = "",
    mirror_writers: int = 4,
    max_domains: int = 0,
    architecture: str = "multipath_rmsf_net",
    num_epochs: int = 30,
    batch_size: int = 128,
    learning_rate: float = 0.001,
    predict_temperatures: list = [300.0, 350.0, 400.0],  # noqa: B006 (KFP reads the default)
    eval_split: str = "test",
    permutation_importance: bool = False,
    accepted_metrics_uri: str = "",
    max_drop: float = 0.05,
    model_registry_url: str = "",
    gpu_product: str = DEFAULT_GPU_PRODUCT,
    distributed_training: bool = False,
    num_nodes: int = 1,
    gpus_per_node: int = 2,
    trainer_runtime: str = DEFAULT_TRAINER_RUNTIME,
    s3_secret_name: str = S3_SECRET,
    settings: dict = {},  # noqa: B006
):
    """Preprocess, train, predict, evaluate and visualize.

    Args:
        voxel_file: URI of the voxel HDF5 (aposteriori layout) or packed store.
        aggregated_rmsf_file: URI of the RMSF CSV.
        train_split_file: URI of the training domain list.
        val_split_file: URI of the validation domain list.
        test_split_file: URI of the test domain list.
        mirror_to_zarr: first mirror the voxel HDF5 into a packed zarr store (resumable;
            reused when complete) and read voxels from it: whole compressed chunks instead
            of one HDF5 dataset per residue.
        mirror_uri: where the packed store goes (e.g. s3://voxelflex/mdcath/voxels.packed);
            empty puts it beside the voxel file.
        mirror_writers: pods writing the mirror's chunks side by side (up to 8 at once).
        max_domains: keep at most this many domains per split (quick runs); 0 keeps all.
        architecture: multipath_rmsf_net, densenet3d_regression or dilated_resnet3d.
        num_epochs: most training epochs (early stopping may end sooner).
        batch_size: training samples per step.
        learning_rate: AdamW learning rate.
        predict_temperatures: temperatures (K) to predict at for the evaluation split.
        eval_split: split to predict, evaluate and plot (train, val or test).
        permutation_importance: also measure temperature and voxel-channel importance.
        accepted_metrics_uri: when set, gate the run: fail it when the mean per-domain r at
            any temperature fell by more than max_drop against the pinned baseline of this
            promotion record; a passing run's model becomes the accepted one (the first
            run's model also the baseline).
        max_drop: largest allowed fall of the mean per-domain r (with accepted_metrics_uri).
        model_registry_url: a Kubeflow Model Registry (http(s)://host:port) to register
            promoted models in; empty: none.
        gpu_product: nvidia.com/gpu.product label of the GPU nodes for train and predict;
            empty allows any GPU node.
        distributed_training: train data-parallel as a Kubeflow Trainer TrainJob of
            num_nodes x gpus_per_node GPUs (needs Kubeflow Trainer v2 and object-storage
            inputs); off trains on one GPU in the step's own pod.
        num_nodes: TrainJob nodes (with distributed_training).
        gpus_per_node: GPUs per TrainJob node, one training process each.
        trainer_runtime: the ClusterTrainingRuntime the TrainJob uses.
        s3_secret_name: Kubernetes secret holding AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY
            and AWS_ENDPOINT_URL for the object store.
        settings: further config sections merged over the defaults, e.g.
            {"model": {"base_filters": 16}, "training": {"num_workers": 4},
            "monitoring": {"pushgateway_url": "http://pushgateway.monitoring:9091"}}.
    """
    selector = configure_step(
        gpu_node_selector(gpu_product=gpu_product), "gpu_node_selector", None, cache=True
    )
    voxels = voxel_source(
        voxel_file, mirror_to_zarr, mirror_uri, mirror_writers, settings, s3_secret_name
    )
    prep = preprocess_step(
        voxels,
        aggregated_rmsf_file,
        train_split_file,
        val_split_file,
        test_split_file,
        max_domains,
        settings,
        s3_secret_name,
        source_voxel_file=voxel_file,
    )
    training = dict(  # what either trainer takes
        metadata=prep.outputs["metadata"],
        voxel_file=voxels,
        architecture=architecture,
        num_epochs=num_epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        settings=settings,
    )
    after = (
        prep.outputs["metadata"],
        voxels,
        selector,
        predict_temperatures,
        eval_split,
        permutation_importance,
        accepted_metrics_uri,
        max_drop,
        model_registry_url,
        settings,
        s3_secret_name,
    )
    train_and_use(
        training,
        after,
        distributed_training,
        num_nodes,
        gpus_per_node,
        gpu_product,
        trainer_runtime,
        s3_secret_name,
    )
