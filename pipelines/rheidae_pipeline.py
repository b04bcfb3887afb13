"""The Rheidae pipeline: preprocess -> train -> evaluate -> visualize.

One definition for the Kubeflow UI (`pipelines/compiled/rheidae_pipeline.yaml`) and a laptop
(`rheidae pipeline run --local`); train runs on the GPU nodes with the settings every
pipeline's GPU steps use.
"""

from kfp import dsl

from pipekit.pipeline.gpu import gpu_node_selector
from pipekit.pipeline.tasks import DEFAULT_GPU_PRODUCT, S3_SECRET, configure, on_gpu, scraped
from rheidae.components import evaluate, preprocess, train, visualize

RESOURCES = {
    "preprocess": ("1", "4", "4Gi", "16Gi"),
    "train": ("4", "8", "8Gi", "16Gi"),
    "evaluate": ("1", "2", "4Gi", "8Gi"),
    "visualize": ("1", "2", "2Gi", "4Gi"),
    "gpu_node_selector": ("100m", "500m", "256Mi", "1Gi"),
}


def _step(task: dsl.PipelineTask, step: str, secret_name) -> dsl.PipelineTask:
    return configure(task, RESOURCES[step], step != "gpu_node_selector", secret_name)


@dsl.pipeline(name="rheidae", description="Neutrino FFI residual model (48 -> 24) over Box3D")
def rheidae_pipeline(
    raw_dir: str,
    predict_residual: bool = True,
    settings: dict = {},  # noqa: B006 (KFP reads the default)
    eval_split: str = "test",
    gpu_product: str = DEFAULT_GPU_PRODUCT,
    s3_secret_name: str = S3_SECRET,
):
    """Preprocess raw FFI outputs, train the residual model, evaluate it against Box3D.

    Args:
        raw_dir: URI of the folder of raw H5 files (a database, or Emu reduced0D.h5 per run).
        predict_residual: learn F_true - F_box (else F_true).
        settings: the config files as {"pre_process": {...}, "model": {...},
            "train_parms": {...}} (sections as in config/*.yaml).
        eval_split: the split evaluate and visualize report on.
        gpu_product: nvidia.com/gpu.product label of the GPU nodes for train.
        s3_secret_name: Kubernetes secret with the object store's credentials.
    """
    selector = _step(gpu_node_selector(gpu_product=gpu_product), "gpu_node_selector", None)
    prep = _step(preprocess(raw_dir=raw_dir, settings=settings), "preprocess", s3_secret_name)
    trained = train(
        preprocessed=prep.outputs["preprocessed"],
        predict_residual=predict_residual,
        settings=settings,
    )
    on_gpu(scraped(_step(trained, "train", s3_secret_name)), selector)
    evaluated = _step(
        evaluate(
            model=trained.outputs["model"],
            preprocessed=prep.outputs["preprocessed"],
            split=eval_split,
            settings=settings,
        ),
        "evaluate",
        s3_secret_name,
    )
    _step(
        visualize(
            evaluation=evaluated.outputs["evaluation"],
            preprocessed=prep.outputs["preprocessed"],
            split=eval_split,
            settings=settings,
        ),
        "visualize",
        s3_secret_name,
    )
