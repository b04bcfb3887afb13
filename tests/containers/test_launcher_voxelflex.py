"""VoxelFlex's steps under the KFP launcher's rules, in the image: preprocess, then train
killed mid-run (`docker kill`) and retried in a fresh container with an empty output folder,
which must resume from the checkpoint in object storage and end with the weights of an
uninterrupted run; then the mirror, killed between chunks and redone by a new container."""

from __future__ import annotations

import io
import json
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest
import torch

from pipekit.faults import HOLD_ENV, HOLD_MARK
from tests.containers.conftest import listing, read_bytes, upload
from tests.launcher import (
    Task,
    compiled_spec,
    finish,
    hand_over,
    kill,
    start,
    wait,
    wait_for_hold,
)

pytestmark = [pytest.mark.container, pytest.mark.slow]

BUCKET = "voxelflex"
SETTINGS = {
    "model": {"base_filters": 4, "num_residual_blocks": 1, "head_hidden": 16, "dropout_rate": 0.0},
    "training": {
        "num_workers": 0,
        "chunk_size": 2,
        "shuffle_buffer_size": 64,
        "checkpoint_every": 1,
        "early_stopping_patience": 10,
    },
    "logging": {"show_progress": False},
}


@pytest.fixture(scope="module")
def staged(image, store_env, demo_data, tmp_path_factory) -> dict:
    """The demo inputs in object storage and the preprocess task's output, made by the
    preprocess component under the launcher's rules."""
    base = f"s3://{BUCKET}/launcher/inputs"
    inputs = {
        "voxel_file": upload(store_env, demo_data.voxel_file, f"{base}/voxels.hdf5"),
        "aggregated_rmsf_file": upload(store_env, demo_data.rmsf_csv, f"{base}/rmsf.csv"),
    }
    for split in ("train", "val", "test"):
        path = demo_data.root / f"{split}_domains.txt"
        inputs[f"{split}_split_file"] = upload(store_env, path, f"{base}/{path.name}")
    spec = compiled_spec("voxelflex", "voxelflex_pipeline", tmp_path_factory.mktemp("spec"))
    pre = Task(
        spec,
        "preprocess",
        f"s3://{BUCKET}/launcher/run-pre",
        "preprocess",
        {**inputs, "max_domains": 0, "settings": SETTINGS, "inputs_fingerprint": "x"},
        {},
        store_env,
        tmp_path_factory.mktemp("pre"),
        image,
    )
    attempt = pre.run()
    assert attempt.exit_code == 0, attempt.logs[-4000:]
    return {"spec": spec, "metadata": pre.output_uri("metadata"), **inputs}


def _train(staged: dict, run: str, env: dict, workdir: Path, image: str) -> Task:
    params = {
        "voxel_file": staged["voxel_file"],
        "architecture": "multipath_rmsf_net",
        "num_epochs": 3,
        "batch_size": 32,
        "learning_rate": 0.001,
        "settings": SETTINGS,
    }
    root = f"s3://{BUCKET}/launcher/{run}"
    inputs = {"metadata": staged["metadata"]}
    return Task(staged["spec"], "train", root, "train", params, inputs, env, workdir, image)


def _weights(env: dict, uri: str) -> dict[str, torch.Tensor]:
    ckpt = torch.load(io.BytesIO(read_bytes(env, uri)), weights_only=True)
    return ckpt["model_state"]


def test_a_killed_train_task_retried_in_a_fresh_container_resumes_from_object_storage(
    image, staged, store_env, tmp_path: Path
) -> None:
    whole = _train(staged, "run-whole", store_env, tmp_path / "whole", image)
    done = whole.run()
    assert done.exit_code == 0, done.logs[-4000:]

    task = _train(staged, "run-killed", store_env, tmp_path / "killed", image)
    first = task.start(hold_at="train.after_latest:1")
    task.wait_for_hold(first)
    task.kill(first)
    model = task.output_uri("model")
    # nothing was uploaded (the step did not succeed), but its checkpoint is in the store
    written = listing(store_env, model)
    assert "models/latest_model.pt" in written and "logs/voxelflex.log" not in written

    retry = task.run()
    assert retry.exit_code == 0, retry.logs[-4000:]
    assert "resuming from s3://" in retry.logs and "after epoch 1" in retry.logs
    assert retry.metrics()["epochs_run"] == 3
    # after success the launcher uploaded the local folder: the log is there now
    assert "logs/voxelflex.log" in listing(store_env, model)
    for name in ("best_model.pt", "latest_model.pt"):
        ours = _weights(store_env, f"{model}/models/{name}")
        ref = _weights(store_env, f"{whole.output_uri('model')}/models/{name}")
        assert ours.keys() == ref.keys()
        for key in ref:
            assert torch.equal(ours[key], ref[key]), f"{name}: {key} differs"


def test_a_killed_mirror_task_retried_in_a_fresh_container_keeps_its_finished_chunks(
    image, store_env, tmp_path: Path
) -> None:
    """The store is written by URI (object storage), chunk by chunk: a retry keeps every
    chunk whose marker was written and redoes the rest, to the uninterrupted run's store."""
    from voxelflex.steps.demo_data import make_demo_dataset

    data = make_demo_dataset(
        tmp_path / "demo", n_domains=32, seed=5, min_residues=35, max_residues=40
    )
    assert 1024 < data.n_residues <= 2048  # two chunks of the default 1024 rows
    voxels = upload(store_env, data.voxel_file, f"s3://{BUCKET}/launcher/mirror/voxels.hdf5")
    spec = compiled_spec("voxelflex", "voxelflex_pipeline", tmp_path)

    def task(run: str) -> Task:
        params = {
            "voxel_file": voxels,
            "mirror_uri": f"s3://{BUCKET}/launcher/mirror/{run}.packed",
            "settings": {"logging": {"show_progress": False}},
        }
        root = f"s3://{BUCKET}/launcher/{run}"
        return Task(spec, "mirror", root, "mirror", params, {}, store_env, tmp_path / run, image)

    whole = task("whole").run()
    assert whole.exit_code == 0, whole.logs[-4000:]

    killed = task("killed")
    first = killed.start(hold_at="mirror.before_marker:2")  # chunk 2 stored, no marker yet
    killed.wait_for_hold(first)
    killed.kill(first)
    retry = killed.run()
    assert retry.exit_code == 0, retry.logs[-4000:]
    assert "1 of 2 chunks already written" in retry.logs
    assert retry.metrics()["chunks_written"] == 1 and retry.metrics()["chunks"] == 2

    def contents(run: str) -> dict[str, bytes]:
        uri = f"s3://{BUCKET}/launcher/mirror/{run}.packed"
        return {name: read_bytes(store_env, f"{uri}/{name}") for name in listing(store_env, uri)}

    assert contents("killed") == contents("whole")


class ContainerTrainer:
    """Plays Kubeflow Trainer with the image: each node of a TrainJob is a container of the
    image running the job's own command (torchrun) with the PET_* variables the torch runtime
    sets and the job's environment (the S3 secret's values given directly)."""

    def __init__(self, image: str, env: dict[str, str], hold_at: str | None = None) -> None:
        self.image, self.env, self.hold_at = image, env, hold_at
        self.jobs: dict[str, tuple[dict, list[str]]] = {}
        self.logs: dict[str, str] = {}  # node -> its log, kept when the job is deleted

    def create(self, body: dict) -> None:
        from tests.conftest import free_port
        from tests.trainer_standin import pet_env

        trainer = body["spec"]["trainer"]
        env = {e["name"]: e["value"] for e in trainer["env"] if "value" in e}
        env.update(self.env, PIPEKIT_METRICS_PORT="0")  # the host's network: no fixed port
        if self.hold_at:
            env[HOLD_ENV] = self.hold_at
        port = str(free_port())
        names = []
        for node in range(trainer["numNodes"]):
            pet = pet_env(trainer, node, port)
            name = f"{body['metadata']['name']}-node-0-{node}-{uuid.uuid4().hex[:4]}"
            cmd = ["docker", "run", "-d", "--name", name, "--network", "host", "--shm-size", "1g"]
            for key, value in {**env, **pet}.items():
                cmd += ["-e", f"{key}={value}"]
            subprocess.run([*cmd, self.image, *trainer["command"]], check=True)
            names.append(name)
        self.jobs[body["metadata"]["name"]] = (body, names)

    def _state(self, name: str) -> tuple[bool, int]:
        out = subprocess.run(
            ["docker", "inspect", "-f", "{{.State.Running}} {{.State.ExitCode}}", name],
            capture_output=True,
            text=True,
        )
        running, code = out.stdout.split()
        return running == "true", int(code)

    def get(self, namespace: str, name: str) -> dict | None:
        if name not in self.jobs:
            return None
        body, names = self.jobs[name]
        states = [self._state(n) for n in names]
        if any(r for r, _ in states) and not any(not r and c for r, c in states):
            return {**body, "status": {}}
        kind = "Complete" if all(c == 0 for _, c in states) else "Failed"
        cond = {"type": kind, "status": "True", "reason": "Jobs" + kind, "message": ""}
        return {**body, "status": {"conditions": [cond]}}

    def pods(self, namespace: str, job: str) -> list[dict]:
        out = []
        for name in self.jobs[job][1]:
            running, code = self._state(name)
            state = {"running": {}} if running else {"terminated": {"exitCode": code}}
            status = {"containerStatuses": [{"name": "node", "state": state}]}
            out.append({"metadata": {"name": name}, "status": status})
        return out

    def log_tail(self, namespace: str, pod: str, lines: int = 200) -> str:
        out = subprocess.run(["docker", "logs", pod], capture_output=True, text=True)
        return "\n".join((out.stdout + out.stderr).splitlines()[-lines:])

    def delete(self, namespace: str, name: str) -> None:
        for node in self.jobs.pop(name, (None, []))[1]:
            self.logs[node] = self.log_tail(namespace, node, lines=10_000)
            subprocess.run(["docker", "rm", "-f", node], capture_output=True)

    def kill_at_hold(self, timeout: float = 300) -> None:
        """Wait for a node to reach its hold point, then `docker kill` it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for _, names in list(self.jobs.values()):
                for name in names:
                    if HOLD_MARK in self.log_tail("", name):
                        subprocess.run(["docker", "kill", name], check=True, capture_output=True)
                        return
            time.sleep(0.5)
        raise AssertionError("no node reached its hold point")


def test_a_trainjob_whose_node_is_killed_resumes_from_object_storage_when_retried(
    image, staged, store_env, monkeypatch
) -> None:
    """The TrainJob step (on the host, as its orchestrating pod) runs a one-node job whose
    node is a container of the image; the node is killed mid-training (the job fails, and so
    does the step); the retried step's new job resumes from the run folder in object storage
    and ends with an uninterrupted job's weights."""
    from voxelflex.config import config_from_dict
    from voxelflex.steps import train_job

    for key, value in store_env.items():
        monkeypatch.setenv(key, value)

    def cfg_for(run: str):
        return config_from_dict(
            {
                **{k: v for k, v in SETTINGS.items()},
                "input": {"voxel_file": staged["voxel_file"]},
                "data": {"processed_dir": staged["metadata"]},
                "output": {"base_dir": f"s3://{BUCKET}/launcher/{run}", "run_name": "model"},
                "training": {**SETTINGS["training"], "num_epochs": 3, "batch_size": 32},
            },
            origin="test",
        )

    def spec_for(run: str):
        uri = f"s3://{BUCKET}/launcher/{run}/model"
        return train_job.pipeline_spec(uri, image, 1, 0, "", "torch-distributed", "", run)

    def job(run: str, trainer: ContainerTrainer):
        return train_job.run(cfg_for(run), spec_for(run), trainer, poll_s=0.5, timeout_s=600)

    whole = job("job-whole", ContainerTrainer(image, store_env))
    assert whole.epochs_run == 3

    trainer = ContainerTrainer(image, store_env, hold_at="train.after_latest:1")
    killer = threading.Thread(target=trainer.kill_at_hold)
    killer.start()
    with pytest.raises(train_job.TrainJobFailed, match="exit code 137|137"):
        job("job-killed", trainer)
    killer.join()
    assert not trainer.jobs, "the failed job was deleted"
    again = ContainerTrainer(image, store_env)
    retried = job("job-killed", again)
    assert retried.epochs_run == 3
    (node_log,) = again.logs.values()
    assert "resuming from s3://" in node_log and "after epoch 1" in node_log
    history = json.loads(read_bytes(store_env, retried.history))
    assert [h["epoch"] for h in history] == [1, 2, 3]
    for name in ("best_model.pt", "latest_model.pt"):
        ours = _weights(store_env, f"s3://{BUCKET}/launcher/job-killed/model/models/{name}")
        ref = _weights(store_env, f"s3://{BUCKET}/launcher/job-whole/model/models/{name}")
        for key in ref:
            assert torch.equal(ours[key], ref[key]), f"{name}: {key} differs"


def test_a_killed_ingest_restarted_in_a_fresh_container_finishes_from_its_parts(
    image, store_env, tmp_path: Path
) -> None:
    """`voxelflex ingest-mdcath` in the image, reading the mdCATH files from object storage and
    writing to a volume (its `--out` is a folder: on a cluster, the pod's volume claim), killed
    after its second domain; a new container on the same volume ends with the outputs of a
    run that was never killed."""
    from tests.voxelflex.test_ingest_mdcath import assert_same_outputs, write_mdcath

    src = tmp_path / "src"
    src.mkdir()
    for k, (domain, n_res) in enumerate([("1abcA00", 6), ("2defB01", 4), ("4ghiD00", 5)]):
        write_mdcath(src, domain, n_res, k + 1)
    uri = upload(store_env, src, f"s3://{BUCKET}/launcher/mdcath")
    cmd = ["voxelflex", "ingest-mdcath", "--src", uri, "--out", "/data/out", "-q"]

    def volume(name: str) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        hand_over(folder)
        return folder

    whole, killed = volume("whole"), volume("killed")
    name = start(image, cmd, store_env, ["-v", f"{whole}:/data/out"], "ingest")
    assert wait(name) == 0, finish(name)[-3000:]
    finish(name)

    name = start(
        image,
        cmd,
        {**store_env, HOLD_ENV: "ingest.before_csv:2"},
        ["-v", f"{killed}:/data/out"],
        "ingest",
    )
    wait_for_hold(name)
    kill(name)
    finish(name)
    assert len(list((killed / "_ingest" / "parts").glob("*.csv"))) == 1  # one domain done
    name = start(image, cmd, store_env, ["-v", f"{killed}:/data/out"], "ingest")
    code, logs = wait(name), finish(name)
    assert code == 0, logs[-3000:]
    assert_same_outputs(whole, killed)
