"""Rheidae's preprocess and train under the KFP launcher's rules, in the image: train killed
mid-run (`docker kill`), retried in a fresh container with an empty output folder, resumes
from its checkpoint in object storage and ends with an uninterrupted run's weights; each
container under its pod's limits."""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import pytest
import torch

from pipekit.memory import physical_memory
from tests.containers.conftest import listing, read_bytes, upload
from tests.launcher import Task, compiled_spec

pytestmark = [pytest.mark.container, pytest.mark.slow]

OVERRIDES = [
    "training.epochs=5",
    "training.patience=10",
    "model.hidden_dims=[32, 32]",
    "logging.show_progress=false",
]


@pytest.fixture(scope="module")
def staged(image, store_env, tmp_path_factory) -> dict:
    from rheidae.demo import make_demo
    from rheidae.pipeline_run import pipeline_arguments

    demo = make_demo(tmp_path_factory.mktemp("rheidae"), n_runs=600, seed=0)
    # the configs' relative paths are read from the project folder, as the lab runs them
    with contextlib.chdir(demo.root):
        args = pipeline_arguments(
            str(demo.pre_process), str(demo.model_config), str(demo.train_parms), OVERRIDES, True
        )
    raw = upload(store_env, Path(args["raw_dir"]), "s3://lab/rheidae/raw")
    spec = compiled_spec("rheidae", "rheidae_pipeline", tmp_path_factory.mktemp("spec"))
    pre = Task(
        spec,
        "preprocess",
        "s3://lab/rheidae/run-pre",
        "preprocess",
        {"raw_dir": raw, "settings": args["settings"]},
        {},
        store_env,
        tmp_path_factory.mktemp("pre"),
        image,
    )
    done = pre.run()
    assert done.exit_code == 0, done.logs[-4000:]
    # the compiled preprocess task's limits (cpu '4', memory 16Gi), within this machine;
    # Docker's own 64 MiB /dev/shm, a CPU step's
    assert done.limits == _limits(cpus=4, memory=16 * 2**30, shm=64 * 2**20)
    return {"spec": spec, "preprocessed": pre.output_uri("preprocessed"), **args}


def _train(staged: dict, run: str, env: dict, workdir: Path, image: str) -> Task:
    params = {"predict_residual": True, "settings": staged["settings"]}
    inputs = {"preprocessed": staged["preprocessed"]}
    root = f"s3://lab/rheidae/{run}"
    return Task(staged["spec"], "train", root, "train", params, inputs, env, workdir, image)


def _limits(cpus: int, memory: int, shm: int) -> dict[str, int]:
    """What `docker inspect` reports for a pod's limits, capped at this machine as Docker
    requires (it refuses more CPUs than it has)."""
    cap = physical_memory()
    mem = min(memory, cap)
    nano = min(cpus, os.cpu_count() or 1) * 10**9
    return {"NanoCpus": nano, "Memory": mem, "MemorySwap": mem, "ShmSize": min(shm, mem)}


def _state(env: dict, uri: str) -> dict[str, torch.Tensor]:
    return torch.load(io.BytesIO(read_bytes(env, uri)), weights_only=True)["model_state"]


def test_a_killed_train_task_retried_in_a_fresh_container_resumes_from_object_storage(
    image, staged, store_env, tmp_path: Path
) -> None:
    whole = _train(staged, "run-whole", store_env, tmp_path / "whole", image)
    done = whole.run()
    assert done.exit_code == 0, done.logs[-4000:]

    task = _train(staged, "run-killed", store_env, tmp_path / "killed", image)
    first = task.start(hold_at="train.latest_saved:2")
    task.wait_for_hold(first)
    task.kill(first)
    model = task.output_uri("model")
    assert "checkpoints/latest_model.pt" in listing(store_env, model)

    retry = task.run()
    assert retry.exit_code == 0, retry.logs[-4000:]
    # the train task's (cpu '8', memory 16Gi, one GPU): a GPU pod's memory-backed /dev/shm
    assert first.limits == retry.limits == _limits(cpus=8, memory=16 * 2**30, shm=16 * 2**30)
    assert "resuming after epoch 2 from s3://" in retry.logs
    assert retry.metrics()["epochs_run"] == 5
    assert "logs/rheidae.log" in listing(store_env, model)
    for name in ("best_model.pt", "checkpoints/latest_model.pt"):
        ours = _state(store_env, f"{model}/{name}")
        ref = _state(store_env, f"{whole.output_uri('model')}/{name}")
        assert ours.keys() == ref.keys()
        for key in ref:
            assert torch.equal(ours[key], ref[key]), f"{name}: {key} differs"
