"""The node selector GPU steps run under, made from the pipeline's GPU product parameter."""

from kfp import dsl

from pipekit.pipeline.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def gpu_node_selector(gpu_product: str) -> dict:
    """Node selector for the GPU steps, from a GPU product label.

    Args:
        gpu_product: value of the nodes' nvidia.com/gpu.product label (set by NVIDIA GPU
            feature discovery), e.g. Quadro-RTX-8000; empty allows any GPU node.

    Returns:
        The nodeSelector mapping the GPU steps' pods carry.
    """
    return {"nvidia.com/gpu.product": gpu_product} if gpu_product else {}
