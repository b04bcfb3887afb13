"""The TrainJob step: its manifest (pure), failure reports, and whole runs on this machine
through a stand-in for Kubeflow Trainer that launches the job's own torchrun command once
per node with the PET_* variables the torch runtime sets."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import kubernetes_validate
import pytest
import torch

from pipekit.checkpoint import load_checkpoint
from tests.trainer_standin import LocalTrainer, _pod
from voxelflex.config import load_config
from voxelflex.data.samples import read_master_samples
from voxelflex.paths import RunPaths
from voxelflex.steps import preprocess
from voxelflex.steps.train_job import (
    GPU_PRODUCT_LABEL,
    TrainJobFailed,
    TrainJobSpec,
    _log_excerpt,
    failure_report,
    job_name,
    run,
    submit,
    trainer_command,
    trainjob_body,
    wait,
)

K8S_VERSION = "1.32.0"


def _spec(**kw) -> TrainJobSpec:
    base = dict(
        name="voxelflex-train-abc",
        namespace="team",
        image="ghcr.io/voxelflex/voxelflex:0.1.0-cuda",
        config_uri="s3://bucket/run/train_job_config.yaml",
        num_nodes=2,
        gpus_per_node=4,
        gpu_product="Quadro-RTX-8000",
        secret_name="lab-pipelines-s3",
        secret_env={"AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID"},
        env={"PIPEKIT_METRICS_PORT": "9400"},
        pod_labels={"pipekit.io/metrics": "true"},
    )
    base["command"] = tuple(trainer_command(kw.get("config_uri", base["config_uri"])))
    return TrainJobSpec(**{**base, **kw})


def _pod_patch(body: dict) -> dict:
    (patch,) = body["spec"]["runtimePatches"]
    (job,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    assert job["name"] == "node"
    return job["template"]["spec"]["template"]


def test_trainjob_body_carries_nodes_gpus_placement_and_the_plain_torchrun_command() -> None:
    body = trainjob_body(_spec())
    assert body["apiVersion"] == "trainer.kubeflow.org/v1alpha1" and body["kind"] == "TrainJob"
    assert body["metadata"]["name"] == "voxelflex-train-abc"
    assert body["metadata"]["namespace"] == "team"
    spec = body["spec"]
    assert spec["runtimeRef"] == {"name": "torch-distributed"}
    trainer = spec["trainer"]
    assert trainer["numNodes"] == 2 and trainer["numProcPerNode"] == 4
    assert trainer["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == "4"
    # no rendezvous flags: the runtime's PET_* variables drive torchrun
    assert trainer["command"] == [
        "torchrun", "-m", "voxelflex", "train",
        "--config", "s3://bucket/run/train_job_config.yaml", "--auto-resume",
    ]  # fmt: skip
    secret = [e for e in trainer["env"] if "valueFrom" in e]
    assert secret == [
        {
            "name": "AWS_ACCESS_KEY_ID",
            "valueFrom": {"secretKeyRef": {"name": "lab-pipelines-s3", "key": "AWS_ACCESS_KEY_ID"}},
        }
    ]
    pod = _pod_patch(body)
    assert pod["spec"]["nodeSelector"] == {GPU_PRODUCT_LABEL: "Quadro-RTX-8000"}
    assert pod["spec"]["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert pod["metadata"]["labels"] == {"pipekit.io/metrics": "true"}
    assert trainjob_body(_spec()) == body  # pure


def test_trainjob_pod_parts_are_valid_kubernetes() -> None:
    """The pieces that become the node pods (placement, volumes, the trainer container)
    pass strict validation as a Pod; the TrainJob's own fields are checked above."""
    body = trainjob_body(_spec())
    trainer, pod = body["spec"]["trainer"], _pod_patch(body)
    container = {
        "name": "node",
        "image": trainer["image"],
        "command": trainer["command"],
        "env": trainer["env"],
        "resources": trainer["resourcesPerNode"],
        "volumeMounts": pod["spec"]["containers"][0]["volumeMounts"],
    }
    manifest = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "n", **pod["metadata"]},
        "spec": {**pod["spec"], "containers": [container]},
    }
    kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)


def test_cpu_nodes_and_bad_specs() -> None:
    body = trainjob_body(_spec(gpus_per_node=0, gpu_product=""))
    trainer, pod = body["spec"]["trainer"], _pod_patch(body)
    assert (
        trainer["numProcPerNode"] == 1
        and "nvidia.com/gpu" not in trainer["resourcesPerNode"]["limits"]
    )
    assert "nodeSelector" not in pod["spec"] and "tolerations" not in pod["spec"]
    with pytest.raises(Exception, match="num_nodes >= 1"):
        _spec(num_nodes=0)
    with pytest.raises(Exception, match="RFC 1035"):
        _spec(name="Bad_Name")
    name = job_name("s3://bucket/run/123/train-job/model")
    assert name == job_name("s3://bucket/run/123/train-job/model") != job_name("other")
    assert len(name) <= 63 and name.startswith("voxelflex-train-")


FAILED_JOB = {
    "metadata": {"name": "j"},
    "status": {"conditions": [{"type": "Failed", "status": "True", "reason": "FailedJobs",
                               "message": "jobset failed"}]},
}  # fmt: skip


def test_failure_report_names_each_failing_pod_and_its_log_tail() -> None:
    pods = [
        _pod("j-node-0-0", phase="Failed", containerStatuses=[{
            "name": "node", "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]),
        _pod("j-node-0-1", phase="Pending", containerStatuses=[{
            "name": "node", "state": {"waiting": {"reason": "ImagePullBackOff",
                                                  "message": "no such image"}}}]),
        _pod("j-node-0-2", phase="Pending", conditions=[{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/3 nodes: Insufficient nvidia.com/gpu"}]),
        _pod("j-node-0-3", phase="Running"),
    ]  # fmt: skip
    report = failure_report(FAILED_JOB, pods, {"j-node-0-0": "epoch 1\nKilled"})
    assert "TrainJob j failed: FailedJobs: jobset failed" in report
    assert "j-node-0-0: container node exited 137 (OOMKilled)" in report
    assert "    | Killed" in report and "    | epoch 1" in report
    assert "j-node-0-1: ImagePullBackOff: no such image" in report
    assert "Insufficient nvidia.com/gpu" in report
    assert "j-node-0-3" not in report


class DictCluster:
    """Jobs as stored objects; enough for submit's and wait's decisions."""

    def __init__(self, jobs=None) -> None:
        self.jobs = dict(jobs or {})
        self.created, self.deleted = [], []

    def create(self, body):
        self.created.append(body["metadata"]["name"])
        self.jobs[body["metadata"]["name"]] = {**body, "status": {}}

    def get(self, namespace, name):
        return self.jobs.get(name)

    def delete(self, namespace, name):
        self.deleted.append(name)
        self.jobs.pop(name, None)

    def pods(self, namespace, job):
        return []

    def log_tail(self, namespace, pod, lines=20):
        return ""


def test_a_retried_step_waits_for_its_running_job_or_replaces_an_ended_one() -> None:
    body = trainjob_body(_spec())
    running = DictCluster({body["metadata"]["name"]: {"status": {}}})
    submit(running, body)
    assert running.created == [] and running.deleted == []
    ended = DictCluster({body["metadata"]["name"]: FAILED_JOB})
    submit(ended, body)
    assert ended.deleted == ["voxelflex-train-abc"] and ended.created == ["voxelflex-train-abc"]


def test_wait_times_out_and_reports_a_vanished_job() -> None:
    cluster = DictCluster({"j": {"status": {}}})
    ticks = iter(range(0, 10_000, 100))
    with pytest.raises(TrainJobFailed, match="still running after 250 s"):
        wait(cluster, "ns", "j", 250, sleep=lambda _: None, clock=lambda: next(ticks))
    with pytest.raises(TrainJobFailed, match="disappeared"):
        wait(DictCluster(), "ns", "j", 250, sleep=lambda _: None)


def _job_spec(config_uri: str, name="voxelflex-train-local", num_nodes=2) -> TrainJobSpec:
    return _spec(
        name=name,
        config_uri=config_uri,
        gpus_per_node=0,
        gpu_product="",
        secret_name=None,
        num_nodes=num_nodes,
    )


@pytest.mark.slow
def test_a_two_node_trainjob_trains_the_run_and_a_restarted_run_matches_it(
    demo_data, tmp_path: Path
) -> None:
    """Two nodes (torchrun reads PET_NNODES, PET_NODE_RANK, PET_MASTER_* from the
    environment, no flags) train the run as one job of world size 2, and the job is deleted.
    The same training on one node (two processes), stopped after epoch 1 and restarted with
    --auto-resume, ends on the same weights and losses, bit for bit."""
    from tests.conftest import write_config
    from tests.voxelflex.test_distributed import _ok, _train, torchrun

    configs = {name: write_config(tmp_path / name, demo_data) for name in ("job", "restarted")}
    cfg = load_config(str(configs["job"]))
    preprocess.run(cfg)
    paths = RunPaths.from_config(cfg)
    (tmp_path / "cluster").mkdir()
    cluster = LocalTrainer(tmp_path / "cluster")
    spec = _job_spec(str(Path(paths.run_dir) / "train_job_config.yaml"))
    result = run(cfg, spec, cluster, poll_s=1, timeout_s=240)
    assert cluster.deleted == [spec.name]
    assert result.epochs_run == 2 and result.best_val_pearson == result.best_val_pearson
    n_train = len(read_master_samples(paths.master_samples, ("train",)))
    assert result.last_epoch["train_samples"] == n_train  # both nodes, each sample once
    best = load_checkpoint(result.best_model)
    assert best["epoch"] in (0, 1)
    assert not any(k.startswith("module.") for k in best["model_state"])  # loads without DDP
    log = Path(paths.log_file).read_text()  # rank 0's alone
    assert "on cpu x 2" in log and log.count("epoch 2:") == 1  # one job, not two runs
    # one line of result, from rank 0; the other node stays quiet
    node_logs = [(tmp_path / "cluster" / f"node-{n}.log").read_text() for n in (0, 1)]
    assert sum("best validation Pearson r" in text for text in node_logs) == 1

    restarted = configs["restarted"]
    preprocess.run(load_config(str(restarted)))
    for i, epochs in enumerate([1, 2]):
        flags = ["--set", f"training.num_epochs={epochs}"] + (["--auto-resume"] if i else [])
        _ok(torchrun(*_train(restarted, *flags)))
    a = load_checkpoint(paths.latest_model)
    b = load_checkpoint(RunPaths.from_config(load_config(str(restarted))).latest_model)
    assert a["epoch"] == b["epoch"] == 1
    for key, tensor in a["model_state"].items():
        assert torch.equal(tensor, b["model_state"][key]), key
    assert [h["train_loss"] for h in a["history"]] == [h["train_loss"] for h in b["history"]]


@pytest.mark.slow
def test_a_failing_trainjob_surfaces_the_pods_reason_and_is_deleted(
    demo_config: Path, tmp_path: Path
) -> None:
    cfg = load_config(str(demo_config))  # not preprocessed: training must fail
    paths = RunPaths.from_config(cfg)
    cluster = LocalTrainer(tmp_path)
    # one node: failing needs no peers (each node is a torchrun launch of its own)
    spec = _job_spec(str(Path(paths.run_dir) / "train_job_config.yaml"), num_nodes=1)
    with pytest.raises(TrainJobFailed) as err:
        run(cfg, spec, cluster, poll_s=1, timeout_s=240)
    assert cluster.deleted == [spec.name]
    assert "container node exited" in str(err.value)
    assert "temp_scaling_params.json" in str(err.value)  # the log tail says what was missing


def test_pipeline_spec_uses_the_task_settings_kfp_forwards(monkeypatch) -> None:
    from kfp import dsl

    from voxelflex.steps.train_job import pipeline_spec

    args = ("s3://b/run/model", "img:1", 2, 4, "Quadro-RTX-8000", "torch-distributed", "sec")
    forwarded = dsl.TaskConfig(
        resources={"limits": {"nvidia.com/gpu": "4", "cpu": "16", "memory": "96Gi"}},
        node_selector={"nvidia.com/gpu.product": "Tesla-V100"},
        tolerations=[
            {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}
        ],
    )
    spec = pipeline_spec(*args, run_id="r1", namespace="team", forwarded=forwarded)
    assert spec.config_uri == "s3://b/run/model/train_job_config.yaml"
    assert spec.name == job_name("s3://b/run/model")
    body = trainjob_body(spec)
    assert body["spec"]["trainer"]["resourcesPerNode"] == forwarded.resources
    pod = _pod_patch(body)["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "Tesla-V100"}
    assert pod["tolerations"][0]["key"] == "dedicated"
    env = {e["name"]: e.get("value") for e in body["spec"]["trainer"]["env"]}
    assert env["PIPEKIT_RUN_ID"] == "r1" and env["PIPEKIT_METRICS_PORT"] == "9400"
    assert env["AWS_SECRET_ACCESS_KEY"] is None  # from the secret, never a value
    # a backend that forwards nothing: placement from the parameters
    plain = trainjob_body(
        pipeline_spec(*args, run_id="r1", namespace="team", forwarded=dsl.TaskConfig())
    )
    assert plain["spec"]["trainer"]["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == "4"
    assert _pod_patch(plain)["spec"]["nodeSelector"] == {GPU_PRODUCT_LABEL: "Quadro-RTX-8000"}


def test_without_a_cluster_the_step_says_what_it_needs(monkeypatch, tmp_path: Path) -> None:
    from pipekit.errors import InputDataError
    from voxelflex.steps.train_job import KubernetesCluster

    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(InputDataError, match="needs a Kubernetes cluster"):
        KubernetesCluster()


def test_a_stopped_step_still_deletes_its_job(tmp_path: Path) -> None:
    """KFP stops a cancelled run's pod with SIGTERM; the job must not outlive it."""
    script = tmp_path / "step.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(Path(__file__).parents[2])!r})\n"
        "from tests.voxelflex.test_train_job import DictCluster, _spec\n"
        "from voxelflex.steps.train_job import run_job\n"
        "class Noisy(DictCluster):\n"
        "    def delete(self, namespace, name):\n"
        "        print('deleted', name, flush=True)\n"
        "cluster = Noisy()\n"
        "print('waiting', flush=True)\n"
        "run_job(cluster, _spec(), poll_s=0.2)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "waiting"
    time.sleep(1.0)
    proc.terminate()  # SIGTERM
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "deleted voxelflex-train-abc" in out


FAILING_NODE = """
import sys
kind = sys.argv[1]
if kind == "oom":
    raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 47.5 GiB total)")
if kind == "os":
    raise OSError(28, "No space left on device", "/outputs/run/models/latest_model.pt")
if kind == "value":
    raise ValueError("operands could not be broadcast together with shapes (3,) (4,)")
raise KeyError("temp_scaling")
"""


def test_the_failure_report_shows_the_exception_not_torchruns_noise(tmp_path: Path) -> None:
    """Real torchrun launches of a failing program: the excerpt leads with the exception."""
    script = tmp_path / "node.py"
    script.write_text(FAILING_NODE)
    want = {
        "oom": "RuntimeError: CUDA out of memory",
        "os": "OSError: [Errno 28] No space left on device",
        "value": "ValueError: operands could not be broadcast",
        "key": "KeyError: 'temp_scaling'",
    }
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runs = {
        kind: subprocess.Popen(
            [*cmd, str(script), kind], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        for kind in want
    }
    for kind, proc in runs.items():
        log = proc.communicate(timeout=120)[0].decode()
        assert proc.returncode != 0 and "ChildFailedError" in log  # torchrun's noise is there
        excerpt = _log_excerpt(log)
        assert any(line.startswith(want[kind]) for line in excerpt), excerpt
        assert not any("ChildFailedError" in line or "elastic" in line for line in excerpt)


@pytest.mark.slow
def test_a_trainjob_whose_node_raises_reports_the_exception(demo_config: Path, tmp_path) -> None:
    cfg = load_config(str(demo_config))
    preprocess.run(cfg)
    paths = RunPaths.from_config(cfg)
    Path(paths.models_dir).mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": 0}, paths.latest_model)  # not a VoxelFlex checkpoint: --auto-resume
    cluster = LocalTrainer(tmp_path)
    spec = _job_spec(str(Path(paths.run_dir) / "train_job_config.yaml"), num_nodes=1)
    with pytest.raises(TrainJobFailed) as err:
        run(cfg, spec, cluster, poll_s=1, timeout_s=240)
    assert "KeyError: 'temp_scaling'" in str(err.value)
    assert "ChildFailedError" not in str(err.value)
