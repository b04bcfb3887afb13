"""The Belka pipeline: generate_parquet -> get_vocab -> make_dataset (planned, featurized
by `featurize_tasks` tasks in parallel, gathered) -> create_val_dataset -> train mlm -> fps
-> clf -> make_submission -> visualize.

One definition for the Kubeflow UI (`pipelines/compiled/belka_pipeline.yaml`) and a laptop
(`belka pipeline run --local`). Each mode starts from the previous mode's model; the three
trainings and the submission's predictions run on the GPU nodes.
"""

from belka.components import (
    create_val_dataset,
    generate_parquet,
    get_vocab,
    make_dataset,
    make_dataset_part,
    make_dataset_plan,
    make_submission,
    train_job,
    train_model,
    visualize,
)
from kfp import dsl

from pipekit.pipeline.gpu import gpu_node_selector
from pipekit.pipeline.tasks import (
    DEFAULT_GPU_PRODUCT,
    DEFAULT_TRAINER_RUNTIME,
    S3_SECRET,
    configure,
    on_gpu,
    on_gpus,
    scraped,
)

MODES = ("mlm", "fps", "clf")  # each starts from the one before

# (cpu request, cpu limit, memory request, memory limit) per step
RESOURCES = {
    "generate_parquet": ("2", "4", "16Gi", "24Gi"),  # one bucket of rows_per_bucket at a time
    "get_vocab": ("4", "8", "4Gi", "8Gi"),
    "make_dataset_plan": ("500m", "1", "1Gi", "2Gi"),  # reads the parquet's footer
    "make_dataset_part": ("8", "16", "8Gi", "16Gi"),  # RDKit on system.n_workers processes
    "make_dataset": ("2", "4", "4Gi", "8Gi"),  # gathers and checks the parts' shards
    "create_val_dataset": ("1", "2", "4Gi", "8Gi"),
    "train_model": ("4", "8", "16Gi", "24Gi"),
    "train_job": ("8", "8", "24Gi", "32Gi"),  # per TrainJob node (forwarded, see on_gpus)
    "make_submission": ("4", "8", "16Gi", "24Gi"),
    "visualize": ("1", "2", "2Gi", "4Gi"),
    "gpu_node_selector": ("100m", "500m", "256Mi", "1Gi"),
}


def _step(task: dsl.PipelineTask, step: str, secret_name) -> dsl.PipelineTask:
    return configure(task, RESOURCES[step], step != "gpu_node_selector", secret_name)


def _submit_and_show(models, mols, vocab, store, val, settings, selector, s3_secret_name):
    """make_submission from the clf model, then the report over all three."""
    sub = make_submission(
        molecules=mols.outputs["molecules"],
        vocab=vocab.outputs["vocab"],
        store=store.outputs["store"],
        val_store=val.outputs["val_store"],
        model=models["clf"],
        settings=settings,
    )
    on_gpu(_step(sub, "make_submission", s3_secret_name), selector)
    _step(
        visualize(submission=sub.outputs["submission"], **models, settings=settings),
        "visualize",
        s3_secret_name,
    )


@dsl.pipeline(name="belka", description="SMILES transformer: MLM, ECFP, binding (BELKA)")
def belka_pipeline(
    raw_dir: str,
    settings: dict = {},  # noqa: B006 (KFP reads the default)
    gpu_product: str = DEFAULT_GPU_PRODUCT,
    s3_secret_name: str = S3_SECRET,
    featurize_tasks: int = 4,
    distributed_training: bool = False,
    num_nodes: int = 1,
    gpus_per_node: int = 1,
    trainer_runtime: str = DEFAULT_TRAINER_RUNTIME,
):
    """From the BELKA inputs to a submission and its evaluation.

    Args:
        raw_dir: URI of the folder of train.parquet, test.parquet, DNA_Labeled_Data.csv.
        settings: config sections as in config.yaml (model, training, features, ...); not
            data.root, data.working or data.vocab (the artifacts say where data is).
        gpu_product: nvidia.com/gpu.product label of the GPU nodes for training.
        s3_secret_name: Kubernetes secret with the object store's credentials.
        featurize_tasks: make_dataset's fan-out: tasks featurizing the molecules at once,
            each on system.n_workers processes (98M molecules: see docs/belka.md for the sizing).
        distributed_training: train each mode data-parallel as a Kubeflow Trainer TrainJob
            of num_nodes x gpus_per_node processes (the default: one GPU pod per mode).
        num_nodes: TrainJob nodes (with distributed_training).
        gpus_per_node: GPUs per TrainJob node, one training process each.
        trainer_runtime: the ClusterTrainingRuntime the TrainJob uses.
    """
    selector = _step(gpu_node_selector(gpu_product=gpu_product), "gpu_node_selector", None)
    mols = _step(
        generate_parquet(raw_dir=raw_dir, settings=settings), "generate_parquet", s3_secret_name
    )
    vocab = _step(
        get_vocab(molecules=mols.outputs["molecules"], settings=settings),
        "get_vocab",
        s3_secret_name,
    )
    inputs = {"molecules": mols.outputs["molecules"], "settings": settings}
    plan = _step(
        make_dataset_plan(tasks=featurize_tasks, **inputs), "make_dataset_plan", s3_secret_name
    )
    with dsl.ParallelFor(plan.output) as part:
        shards = _step(
            make_dataset_part(vocab=vocab.outputs["vocab"], part=part, **inputs),
            "make_dataset_part",
            s3_secret_name,
        ).set_display_name("featurize shards")
    store = _step(
        make_dataset(
            vocab=vocab.outputs["vocab"], parts=dsl.Collected(shards.outputs["shards"]), **inputs
        ),
        "make_dataset",
        s3_secret_name,
    ).set_display_name("gather feature store")
    val = _step(
        create_val_dataset(store=store.outputs["store"], settings=settings),
        "create_val_dataset",
        s3_secret_name,
    )
    data = {
        "store": store.outputs["store"],
        "val_store": val.outputs["val_store"],
        "vocab": vocab.outputs["vocab"],
        "settings": settings,
    }
    rest = (mols, vocab, store, val, settings, selector, s3_secret_name)
    # the default first, so its tasks keep their plain names (train-model, make-submission, ...);
    # what follows the training sits inside each branch (kfp.local cannot pick a model
    # artifact out of dsl.OneOf)
    with dsl.If(distributed_training == False):  # noqa: E712
        models = {}
        previous = {}
        for mode in MODES:
            task = train_model(mode=mode, **data, **previous)
            on_gpu(scraped(_step(task, "train_model", s3_secret_name)), selector)
            models[mode] = task.set_display_name(f"train {mode}").outputs["model"]
            previous = {"previous": models[mode]}
        _submit_and_show(models, *rest)
    with dsl.Else():
        models, previous = {}, {}
        job = {
            "num_nodes": num_nodes,
            "gpus_per_node": gpus_per_node,
            "gpu_product": gpu_product,
            "runtime": trainer_runtime,
            "s3_secret_name": s3_secret_name,
        }
        for mode in MODES:
            task = train_job(mode=mode, **data, **job, **previous)
            on_gpus(_step(task, "train_job", s3_secret_name), selector, gpus_per_node)
            models[mode] = task.set_display_name(f"train {mode} (TrainJob)").outputs["model"]
            previous = {"previous": models[mode]}
        _submit_and_show(models, *rest)
