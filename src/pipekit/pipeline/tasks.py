"""Kubernetes settings of a pipeline task: resources, retries, credentials, GPUs, metrics.

Every pipeline of the lab runs its steps the same way: GPU steps on the chosen GPU product
(RTX 8000 class by default) with the GPU taint tolerated and a memory-backed /dev/shm, data
steps with the S3 secret as environment, transient failures retried with backoff.
"""

from __future__ import annotations

import sys

from kfp import dsl, kubernetes
from kfp.dsl import pipeline_task

from pipekit.monitoring import ENV_PORT, METRICS_PORT, SCRAPE_ANNOTATIONS, SCRAPE_LABELS
from pipekit.uri import S3_SECRET_ENV

DEFAULT_TRAINER_RUNTIME = "torch-distributed"  # Kubeflow Trainer v2's PyTorch runtime
DEFAULT_GPU_PRODUCT = "Quadro-RTX-8000"  # nvidia.com/gpu.product of the RTX 8000 nodes
GPU_RESOURCE = "nvidia.com/gpu"
S3_SECRET = "lab-pipelines-s3"  # manifests/base/s3-secret.yaml (one secret for every system)
SHM_GIB = 16  # DataLoader workers hand batches over through shared memory
SHM_SIZE = f"{SHM_GIB}Gi"
RETRIES = {"num_retries": 2, "backoff_duration": "60s", "backoff_factor": 2.0}
RETRY_MAX_BACKOFF = "900s"

# A TrainJob step's own GPU resources, node selector and tolerations describe one node of the
# job: KFP hands them to the component (its task_config) instead of applying them to its pod
TRAINJOB_PASSTHROUGHS = [
    dsl.TaskConfigField.RESOURCES,
    dsl.TaskConfigField.KUBERNETES_NODE_SELECTOR,
    dsl.TaskConfigField.KUBERNETES_TOLERATIONS,
]

# (cpu request, cpu limit, memory request, memory limit)
Resources = tuple[str, str, str, str]


def _ensure_container_spec_exists(self: dsl.PipelineTask) -> None:
    """KFP 2.17's check behind every task setting (`set_cpu_limit`, `set_env_variable`, ...),
    with the same error. KFP names the calling method through `inspect.stack()`, which reads
    the source of every frame on the stack: 81 settings made building the VoxelFlex pipeline
    take 2.5 s (12 s inside pytest); the caller's frame alone names it in microseconds."""
    if self.container_spec is None:
        caller = sys._getframe(1).f_code.co_name
        raise ValueError(
            f"{caller} can only be used on single-step components, not pipelines used as "
            "components, or special components like importers."
        )


pipeline_task.PipelineTask._ensure_container_spec_exists = _ensure_container_spec_exists


def configure(
    task: dsl.PipelineTask,
    resources: Resources,
    retry: bool,
    secret_name: str | None,
    cache: bool = False,
) -> dsl.PipelineTask:
    """Resources, retries with backoff (steps that can fail transiently: storage, network, a
    lost node; a retried training step resumes from its own checkpoint), caching and (steps
    that read data) S3 credentials."""
    cpu_req, cpu_lim, mem_req, mem_lim = resources
    task.set_cpu_request(cpu_req).set_cpu_limit(cpu_lim)
    task.set_memory_request(mem_req).set_memory_limit(mem_lim)
    if retry:
        task.set_retry(**RETRIES, backoff_max_duration=RETRY_MAX_BACKOFF)
    task.set_caching_options(cache)
    if secret_name is not None:
        kubernetes.use_secret_as_env(task, secret_name=secret_name, secret_key_to_env=S3_SECRET_ENV)
    return task


def scraped(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """Serve the step's Prometheus metrics and say so to Prometheus: the prometheus.io pod
    annotations for annotation-based scraping, a label for manifests/monitoring's PodMonitor."""
    task.set_env_variable(ENV_PORT, METRICS_PORT)
    for key, value in SCRAPE_ANNOTATIONS.items():
        kubernetes.add_pod_annotation(task, key, value)
    for key, value in SCRAPE_LABELS.items():
        kubernetes.add_pod_label(task, key, value)
    return task


def on_gpus(task: dsl.PipelineTask, node_selector: dsl.PipelineTask, gpus=1) -> dsl.PipelineTask:
    """`gpus` GPUs on a node of the chosen product, the GPU taint tolerated. On a TrainJob
    step these describe one node of the job (the component forwards them)."""
    task.set_accelerator_type(GPU_RESOURCE).set_accelerator_limit(gpus)
    kubernetes.add_node_selector_json(task, node_selector.output)
    kubernetes.add_toleration(task, key=GPU_RESOURCE, operator="Exists", effect="NoSchedule")
    return task


def on_gpu(task: dsl.PipelineTask, node_selector: dsl.PipelineTask) -> dsl.PipelineTask:
    """One GPU on a node of the chosen product, tolerated taint, memory-backed /dev/shm."""
    on_gpus(task, node_selector)
    kubernetes.empty_dir_mount(
        task, volume_name="dshm", mount_path="/dev/shm", medium="Memory", size_limit=SHM_SIZE
    )
    return task
