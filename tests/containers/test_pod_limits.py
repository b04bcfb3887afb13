"""`--runner docker` runs each step under its task's CPU and memory limits, as its pod would
be: the step sees them (its torch threads and memory checks follow), a GPU step gets its pod's
memory-backed /dev/shm, and a step that outgrows its memory limit is killed and named."""

import json

import pytest
from kfp import dsl
from kfp.dsl import Artifact, Output

from pipekit.errors import PipelineError
from pipekit.pipeline.images import CPU_IMAGE
from pipekit.pipeline.local import run_local

pytestmark = pytest.mark.container


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def limits_seen(seen: Output[Artifact]):
    import json
    import os

    import torch

    from pipekit.cpus import cpu_quota, worker_count
    from pipekit.device import resolve_device
    from pipekit.memory import memory_limit

    resolve_device("cpu")
    shm = os.statvfs("/dev/shm")
    seen_now = {
        "cpus": cpu_quota(),
        "memory": memory_limit(),
        "threads": torch.get_num_threads(),
        "workers": worker_count(4, "training.num_workers"),
    }
    with open(seen.path, "w") as fh:
        json.dump({**seen_now, "shm": shm.f_blocks * shm.f_frsize}, fh)


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def outgrow(mib: int):
    block = bytearray(mib * 2**20)  # zero-filled: every page touched
    print(len(block))


@dsl.pipeline(name="cpu-and-memory-limits")
def limits_pipeline():
    limits_seen().set_cpu_limit("1").set_memory_limit("700Mi")
    on_gpu = limits_seen().set_memory_limit("1Gi")
    on_gpu.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(1)


@dsl.pipeline(name="memory-limit")
def outgrow_pipeline():
    outgrow(mib=600).set_memory_limit("300Mi")


def test_a_step_runs_under_its_tasks_limits(image: str, tmp_path) -> None:
    run = run_local(limits_pipeline, {}, tmp_path, runner="docker")
    cpu, gpu = (json.loads(f.read_text()) for f in sorted(run.run_dir.rglob("seen")))
    assert cpu == {
        "cpus": 1.0,
        "memory": 700 * 2**20,
        "threads": 1,
        "workers": 1,  # loader workers too: 4 asked, the limit's 1
        "shm": 64 * 2**20,
    }
    # the GPU step (on the CPU here): its pod's 16Gi /dev/shm, within its 1Gi memory limit
    assert gpu["memory"] == gpu["shm"] == 2**30


def test_a_step_past_its_memory_limit_is_killed_and_named(image: str, tmp_path, capsys) -> None:
    with pytest.raises(PipelineError, match="local pipeline run failed"):
        run_local(outgrow_pipeline, {}, tmp_path, runner="docker")
    assert "killed at its memory limit (0.3 GiB" in capsys.readouterr().out
