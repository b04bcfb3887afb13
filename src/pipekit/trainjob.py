"""Distributed training as a Kubeflow Trainer v2 `TrainJob`, created and watched by a step.

A system's pipeline step writes the run's config where every node reads it (object
storage), creates a TrainJob on the `torch-distributed` runtime for `num_nodes x
gpus_per_node` processes, waits for it, and deletes it. The runtime sets PET_NNODES,
PET_NPROC_PER_NODE, PET_NODE_RANK, PET_MASTER_ADDR and PET_MASTER_PORT, so each node's
command is a plain `torchrun -m <system> ...` resuming from its checkpoint: the same command
as one GPU, data-parallel. The torch runtime is not elastic; when the JobSet restarts a
failed node, every rank starts again and resumes from the latest checkpoint.

`trainjob_body` and `failure_report` are pure (tested on plain data); `KubernetesCluster` is
the thin part that talks to the API server. Placement (GPU node selector, toleration,
/dev/shm) goes through `runtimePatches` (Trainer 2.2; earlier releases named it
`podTemplateOverrides`). Each system keeps only its command and how it reads the result.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import re
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pipekit.errors import InputDataError
from pipekit.monitoring import (
    ENV_PORT,
    ENV_RUN_ID,
    METRICS_PORT,
    SCRAPE_ANNOTATIONS,
    SCRAPE_LABELS,
)
from pipekit.runlock import OWNER_ENV
from pipekit.uri import S3_SECRET_ENV

log = logging.getLogger(__name__)

GROUP, VERSION, PLURAL = "trainer.kubeflow.org", "v1alpha1", "trainjobs"
NODE = "node"  # the torch runtime's trainer job and container name
MANAGER = "lab-pipelines.io/pipeline"  # owner of our runtime patch
GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
CONFIG_NAME = "train_job_config.yaml"  # the run's config, beside its outputs
SA_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


class TrainJobFailed(RuntimeError):
    """The TrainJob failed, timed out or vanished; the message carries the pods' reasons."""


@dataclass(frozen=True)
class TrainJobSpec:
    name: str
    namespace: str
    image: str
    config_uri: str  # the run's config, readable by every node
    num_nodes: int
    gpus_per_node: int
    runtime: str = "torch-distributed"
    gpu_product: str = ""  # nvidia.com/gpu.product to run on; "" for any GPU node
    cpu_per_node: str = "8"
    memory_per_node: str = "48Gi"
    # the pipeline task's own settings, forwarded by KFP (dsl.TaskConfig): when given they
    # replace the ones made from the fields above
    resources_per_node: Mapping[str, Any] | None = None
    node_selector: Mapping[str, str] | None = None
    tolerations: list[Mapping[str, Any]] | None = None
    shm_size: str = "16Gi"  # DataLoader workers hand batches over through shared memory
    secret_name: str | None = None
    secret_env: Mapping[str, str] = field(default_factory=dict)  # secret key -> env variable
    env: Mapping[str, str] = field(default_factory=dict)
    pod_labels: Mapping[str, str] = field(default_factory=dict)
    pod_annotations: Mapping[str, str] = field(default_factory=dict)
    deadline_s: int = 7 * 24 * 3600
    # what each node runs: `torchrun -m <system> ...` (the runtime's PET_* variables make it
    # data-parallel), and the system it belongs to (a label of the job)
    command: tuple[str, ...] = ()
    system: str = "lab-pipelines"

    def __post_init__(self) -> None:
        if not self.command or self.command[0] != "torchrun":
            raise InputDataError(
                f"a TrainJob's command is a torchrun command line, not {list(self.command)}"
            )
        if self.num_nodes < 1 or self.gpus_per_node < 0:
            raise InputDataError(
                f"a TrainJob needs num_nodes >= 1 and gpus_per_node >= 0, not "
                f"{self.num_nodes} x {self.gpus_per_node}"
            )
        if not re.fullmatch(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?", self.name):
            raise InputDataError(f"TrainJob name {self.name!r} is not an RFC 1035 label")


def job_name(key: str, prefix: str) -> str:
    """A stable TrainJob name for one pipeline task (its output URI): a retried step finds
    the job its earlier attempt made."""
    return f"{prefix}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


def _resources(spec: TrainJobSpec) -> dict[str, Any]:
    per_node: dict[str, str] = {"cpu": spec.cpu_per_node, "memory": spec.memory_per_node}
    if spec.gpus_per_node:
        per_node[GPU_RESOURCE] = str(spec.gpus_per_node)
    return (
        copy.deepcopy(dict(spec.resources_per_node))
        if spec.resources_per_node
        else {"requests": dict(per_node), "limits": dict(per_node)}
    )


def _env(spec: TrainJobSpec) -> list[dict[str, Any]]:
    """The nodes' variables: the spec's values, then the secret's keys by reference."""
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in sorted(spec.env.items())]
    if spec.secret_name:
        env += [
            {"name": var, "valueFrom": {"secretKeyRef": {"name": spec.secret_name, "key": key}}}
            for key, var in sorted(spec.secret_env.items())
        ]
    return env


def _pod_template(spec: TrainJobSpec) -> dict[str, Any]:
    """The nodes' pod: hardened, /dev/shm in memory, on the GPU nodes the spec names."""
    pod_spec: dict[str, Any] = {
        "securityContext": POD_SECURITY,
        "volumes": [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": spec.shm_size}}],
        "containers": [
            {
                "name": NODE,
                "securityContext": CONTAINER_SECURITY,
                "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"}],
            }
        ],
    }
    if spec.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in spec.tolerations]
    elif spec.gpus_per_node:
        pod_spec["tolerations"] = [
            {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}
        ]
    if spec.node_selector:
        pod_spec["nodeSelector"] = dict(spec.node_selector)
    elif spec.gpus_per_node and spec.gpu_product:
        pod_spec["nodeSelector"] = {GPU_PRODUCT_LABEL: spec.gpu_product}
    pod_meta = {
        k: dict(v)
        for k, v in (("labels", spec.pod_labels), ("annotations", spec.pod_annotations))
        if v
    }
    return {"spec": pod_spec, **({"metadata": pod_meta} if pod_meta else {})}


def trainjob_body(spec: TrainJobSpec) -> dict[str, Any]:
    """The TrainJob manifest (pure: the same spec gives the same body)."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TrainJob",
        "metadata": {
            "name": spec.name,
            "namespace": spec.namespace,
            "labels": {
                "app.kubernetes.io/part-of": spec.system,
                "app.kubernetes.io/component": "train",
            },
        },
        "spec": {
            "runtimeRef": {"name": spec.runtime},
            "activeDeadlineSeconds": spec.deadline_s,
            "trainer": {
                "image": spec.image,
                "command": list(spec.command),
                "numNodes": spec.num_nodes,
                # one process per GPU (one on a CPU node)
                "numProcPerNode": max(spec.gpus_per_node, 1),
                "resourcesPerNode": _resources(spec),
                "env": _env(spec),
            },
            "runtimePatches": [
                {
                    "manager": MANAGER,
                    "trainingRuntimeSpec": {
                        "template": {
                            "spec": {
                                "replicatedJobs": [
                                    {
                                        "name": NODE,
                                        "template": {"spec": {"template": _pod_template(spec)}},
                                    }
                                ]
                            }
                        }
                    },
                }
            ],
        },
    }


# Hardened nodes: not root (the images run as their numeric `pipelines` user), no privilege
# escalation, no capabilities, the runtime's default seccomp profile. The root filesystem
# stays writable: torch, matplotlib and the CUDA driver write caches under $HOME and /tmp.
POD_SECURITY: dict[str, Any] = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
CONTAINER_SECURITY: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
}


def condition(job: Mapping[str, Any], kind: str) -> dict[str, Any] | None:
    """The job's status condition `kind` (Complete, Failed, Suspended) when it is True."""
    for cond in job.get("status", {}).get("conditions", []) or []:
        if cond.get("type") == kind and cond.get("status") == "True":
            return dict(cond)
    return None


def _pod_problem(pod: Mapping[str, Any]) -> str | None:
    """Why one pod is failing or stuck, from its status; None when it looks healthy."""
    status = pod.get("status", {}) or {}
    name = pod.get("metadata", {}).get("name", "?")
    for cs in status.get("containerStatuses", []) or []:
        state = cs.get("state", {}) or {}
        last = (cs.get("lastState", {}) or {}).get("terminated")
        term = state.get("terminated") or last
        if term and term.get("exitCode", 0) != 0:
            msg = (term.get("message") or "").strip()
            return (
                f"{name}: container {cs.get('name')} exited {term.get('exitCode')} "
                f"({term.get('reason', 'Error')}){': ' + msg if msg else ''}"
            )
        waiting = state.get("waiting")
        if waiting and waiting.get("reason") not in (None, "ContainerCreating", "PodInitializing"):
            return f"{name}: {waiting.get('reason')}: {waiting.get('message', '')}".rstrip(": ")
    for cond in status.get("conditions", []) or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            return f"{name}: not scheduled ({cond.get('reason')}): {cond.get('message', '')}"
    if status.get("phase") == "Failed":
        return f"{name}: failed ({status.get('reason', 'unknown')}): {status.get('message', '')}"
    return None


# what says why a node failed: a Python exception line (OSError:, KeyError:, RuntimeError:
# CUDA out of memory, pipekit.errors.InputDataError:, ...), a logged ERROR, our one-line
# user error, the kernel's OOM kill
ERROR_LINE = re.compile(
    r"^[\w.]*(Error|Exception|Interrupt|Exit)\b:?|^(ERROR|CRITICAL)\b|^\w+: error:"
    r"|out of memory|^Killed\b"
)
# where torchrun's own report of a failed child begins (its traceback, ChildFailedError and
# the summary block say only that a child failed, not why)
TORCHRUN_REPORT = re.compile(r"torch/distributed/elastic/|ChildFailedError|^=+$")


def _log_excerpt(text: str, errors: int = 10, tail: int = 5) -> list[str]:
    """The lines that say what went wrong, then the last few lines the node's own program
    wrote before torchrun's report of its failure."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    cut = next((i for i, line in enumerate(lines) if TORCHRUN_REPORT.search(line)), len(lines))
    while cut > 0 and lines[cut - 1].startswith("Traceback"):  # torchrun's own traceback
        cut -= 1
    own = lines[:cut] or lines
    picked = [line for line in own[:-tail] if ERROR_LINE.search(line)][-errors:]
    return picked + own[-tail:]


def failure_report(
    job: Mapping[str, Any], pods: Sequence[Mapping[str, Any]], logs: Mapping[str, str]
) -> str:
    """One message for the step's log and the KFP UI: the job's reason, then each failing
    pod's reason and the tail of its log."""
    failed = condition(job, "Failed") or {}
    name = job.get("metadata", {}).get("name", "?")
    lines = [
        f"TrainJob {name} failed: {failed.get('reason', 'unknown')}: {failed.get('message', '')}"
    ]
    problems = [(p, _pod_problem(p)) for p in pods]
    for pod, problem in problems:
        if problem is None:
            continue
        lines.append("  " + problem)
        text = logs.get(pod.get("metadata", {}).get("name", ""), "")
        lines += ["    | " + line for line in _log_excerpt(text)]
    if not any(problem for _, problem in problems):
        lines.append(f"  no failing pod found among {len(pods)}")
    return "\n".join(lines)


class Cluster(Protocol):
    """What the step needs from the API server (plain dicts in and out)."""

    def create(self, body: dict[str, Any]) -> None: ...
    def get(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    def delete(self, namespace: str, name: str) -> None: ...
    def pods(self, namespace: str, job: str) -> list[dict[str, Any]]: ...
    def log_tail(self, namespace: str, pod: str, lines: int = 200) -> str: ...


class KubernetesCluster:
    """`Cluster` over the kubernetes client: in-cluster credentials in a pod, else kubeconfig."""

    def __init__(self) -> None:
        from kubernetes import client, config

        try:
            config.load_incluster_config()
        except config.ConfigException:
            try:
                config.load_kube_config()
            except config.ConfigException as exc:
                raise InputDataError(
                    "distributed training runs as a Kubeflow Trainer TrainJob and needs a "
                    f"Kubernetes cluster: no in-cluster credentials or kubeconfig ({exc})"
                ) from None
        self._api = client.ApiClient()
        self._objects = client.CustomObjectsApi(self._api)
        self._core = client.CoreV1Api(self._api)
        self._api_exception = client.ApiException

    def create(self, body: dict[str, Any]) -> None:
        ns = body["metadata"]["namespace"]
        self._objects.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self._objects.get_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name
            )
        except self._api_exception as exc:
            if exc.status == 404:
                return None
            raise

    def delete(self, namespace: str, name: str) -> None:
        try:
            self._objects.delete_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, propagation_policy="Background"
            )
        except self._api_exception as exc:
            if exc.status != 404:
                raise

    def pods(self, namespace: str, job: str) -> list[dict[str, Any]]:
        # the TrainJob's JobSet has the job's name, and labels its pods with it
        found = self._core.list_namespaced_pod(
            namespace, label_selector=f"jobset.sigs.k8s.io/jobset-name={job}"
        )
        return [self._api.sanitize_for_serialization(p) for p in found.items]

    def log_tail(self, namespace: str, pod: str, lines: int = 200) -> str:
        try:
            return self._core.read_namespaced_pod_log(pod, namespace, tail_lines=lines)
        except self._api_exception:
            return ""


def submit(cluster: Cluster, body: dict[str, Any]) -> None:
    """Create the job; if a job of that name exists (this step's earlier attempt), keep it
    while it runs, or replace it once it has ended (the new one resumes from checkpoint)."""
    ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
    existing = cluster.get(ns, name)
    if existing is not None:
        if condition(existing, "Complete") is None and condition(existing, "Failed") is None:
            log.info("TrainJob %s/%s from an earlier attempt is running: waiting for it", ns, name)
            return
        log.info("TrainJob %s/%s from an earlier attempt has ended: replacing it", ns, name)
        cluster.delete(ns, name)
        _wait_gone(cluster, ns, name)
    cluster.create(body)
    log.info("created TrainJob %s/%s", ns, name)


def _wait_gone(cluster: Cluster, ns: str, name: str, tries: int = 60) -> None:
    for _ in range(tries):
        if cluster.get(ns, name) is None:
            return
        time.sleep(2)
    raise TrainJobFailed(f"TrainJob {ns}/{name} from an earlier attempt is not going away")


def wait(
    cluster: Cluster,
    namespace: str,
    name: str,
    timeout_s: float,
    poll_s: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Poll until the job completes (its final object) or fails (TrainJobFailed with the
    pods' reasons). Progress is logged when the picture changes."""
    start, last = clock(), ""
    while True:
        job = cluster.get(namespace, name)
        if job is None:
            raise TrainJobFailed(f"TrainJob {namespace}/{name} disappeared (deleted by someone?)")
        if condition(job, "Complete") is not None:
            return job
        pods = cluster.pods(namespace, name)
        if condition(job, "Failed") is not None:
            logs = {
                p["metadata"]["name"]: cluster.log_tail(namespace, p["metadata"]["name"])
                for p in pods
                if _pod_problem(p) is not None
            }
            raise TrainJobFailed(failure_report(job, pods, logs))
        phases = json.dumps(sorted((p.get("status", {}) or {}).get("phase", "?") for p in pods))
        if phases != last:
            log.info("TrainJob %s: pods %s", name, phases)
            last = phases
        for pod in pods:
            problem = _pod_problem(pod)
            if problem:  # not fatal yet (the JobSet may restart it), but say so
                log.warning("TrainJob %s: %s", name, problem)
        if clock() - start > timeout_s:
            raise TrainJobFailed(
                f"TrainJob {namespace}/{name} still running after {timeout_s:.0f} s"
            )
        sleep(poll_s)


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def run_job(
    cluster: Cluster,
    spec: TrainJobSpec,
    timeout_s: float | None = None,
    poll_s: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Create, wait, and always delete (pods and all) — also when the wait fails or the step
    is stopped (a cancelled run's pod gets SIGTERM: it becomes SystemExit, so the deletion
    still runs). Returns the completed job."""
    body = trainjob_body(spec)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    submit(cluster, body)
    try:
        return wait(
            cluster, spec.namespace, spec.name, timeout_s or spec.deadline_s + 600, poll_s, sleep
        )
    finally:
        cluster.delete(spec.namespace, spec.name)
        log.info("deleted TrainJob %s/%s", spec.namespace, spec.name)


def pipeline_spec(
    system: str,
    command: list[str],
    run_uri: str,
    image: str,
    num_nodes: int,
    gpus_per_node: int,
    gpu_product: str,
    runtime: str,
    secret_name: str,
    run_id: str,
    namespace: str | None = None,
    forwarded: Any = None,
) -> TrainJobSpec:
    """The TrainJob of one pipeline task whose model artifact lives at `run_uri`: named after
    it (a retried task finds its job), the config beside it, S3 credentials from the
    secret, metrics served and scraped as the pipeline's own GPU steps. `forwarded` is the
    task's dsl.TaskConfig (resources, node selector, tolerations set on the pipeline task);
    a backend that does not forward them leaves the ones made from the parameters."""
    return TrainJobSpec(
        name=job_name(run_uri, f"{system}-train"),
        namespace=namespace or current_namespace(),
        image=image,
        config_uri=run_uri.rstrip("/") + "/" + CONFIG_NAME,
        num_nodes=num_nodes,
        gpus_per_node=gpus_per_node,
        runtime=runtime,
        gpu_product=gpu_product,
        secret_name=secret_name or None,
        secret_env=S3_SECRET_ENV,
        # every restart of the job is the same writer of the run folder (see runlock)
        env={ENV_PORT: METRICS_PORT, ENV_RUN_ID: run_id, OWNER_ENV: run_uri},
        pod_labels=SCRAPE_LABELS,
        pod_annotations=SCRAPE_ANNOTATIONS,
        resources_per_node=getattr(forwarded, "resources", None) or None,
        node_selector=getattr(forwarded, "node_selector", None) or None,
        tolerations=getattr(forwarded, "tolerations", None) or None,
        command=tuple(command),
        system=system,
    )


def current_namespace(default: str = "kubeflow") -> str:
    """The namespace this pod runs in (its service account says), else `default`."""
    try:
        with open(SA_NAMESPACE_FILE) as fh:
            return fh.read().strip() or default
    except OSError:
        return default
