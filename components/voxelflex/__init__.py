"""KFP components, one per step; each calls `voxelflex.steps.<step>.run`."""

from pipekit.pipeline.gpu import gpu_node_selector
from pipekit.pipeline.images import CPU_IMAGE, GPU_IMAGE, IMAGE_VERSION
from voxelflex.components.evaluate import evaluate
from voxelflex.components.fingerprint import fingerprint_inputs
from voxelflex.components.gate import evaluation_gate, model_to_evaluate
from voxelflex.components.mirror import mirror, mirror_plan, mirror_shard
from voxelflex.components.original import original_voxels
from voxelflex.components.predict import predict
from voxelflex.components.preprocess import preprocess
from voxelflex.components.structures import predict_structures, voxelize_structures
from voxelflex.components.train import train
from voxelflex.components.train_job import train_job
from voxelflex.components.visualize import visualize

__all__ = [
    "CPU_IMAGE",
    "GPU_IMAGE",
    "IMAGE_VERSION",
    "evaluate",
    "evaluation_gate",
    "fingerprint_inputs",
    "gpu_node_selector",
    "mirror",
    "mirror_plan",
    "mirror_shard",
    "model_to_evaluate",
    "original_voxels",
    "predict",
    "predict_structures",
    "preprocess",
    "train",
    "train_job",
    "visualize",
    "voxelize_structures",
]
