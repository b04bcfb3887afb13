"""What `--runner docker` gives each step's container, decided before any container starts
(no Docker needed): which host paths it sees, how, and which it may write."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipekit.errors import PipelineError
from pipekit.pipeline.docker_local import IMAGE_UID, host_paths, readable_by_image


def test_local_paths_become_absolute_mounts_and_other_strings_stay(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "voxels.hdf5").write_bytes(b"x")
    (tmp_path / "pdbs").mkdir()
    for name in ("a.pdb", "b.pdb"):
        (tmp_path / "pdbs" / name).write_text("END\n")
    args = {
        "voxel_file": "data/voxels.hdf5",
        "structures": ["pdbs/a.pdb", str(tmp_path / "pdbs" / "b.pdb")],
        "model_ckpt": "facebook/esm2_t33_650M_UR50D",  # a hub name: no such path here
        "remote": "s3://bucket/key",
        "eval_split": "test",
        "embeddings_uri": "cache/flu/v1",  # written by the pipeline; absent so far
        "max_domains": 0,
    }
    out, mounts = host_paths(args, writes={"embeddings_uri"})
    assert out["voxel_file"] == str(tmp_path / "data" / "voxels.hdf5")
    assert out["structures"] == [str(tmp_path / "pdbs" / n) for n in ("a.pdb", "b.pdb")]
    for key in ("model_ckpt", "remote", "eval_split", "max_domains"):
        assert out[key] == args[key]
    cache = tmp_path / "cache" / "flu" / "v1"
    assert out["embeddings_uri"] == str(cache) and cache.is_dir()  # made, to be mounted
    assert dict(mounts) == {
        tmp_path / "data" / "voxels.hdf5": False,
        tmp_path / "pdbs" / "a.pdb": False,
        tmp_path / "pdbs" / "b.pdb": False,
        cache: True,
    }


def test_a_written_file_mounts_its_folder_and_inputs_inside_it_go_with_it(tmp_path):
    (tmp_path / "accepted").mkdir()
    inside = tmp_path / "accepted" / "model.pt"
    inside.write_bytes(b"x")
    args = {"accepted_metrics_uri": str(tmp_path / "accepted" / "promotion.json"), "m": str(inside)}
    _, mounts = host_paths(args, writes={"accepted_metrics_uri"})
    assert mounts == [(tmp_path / "accepted", True)]  # one writable mount holds both


@pytest.mark.skipif(os.geteuid() == IMAGE_UID, reason="the image's own uid reads anything")
def test_an_input_the_image_user_cannot_read_is_named_before_any_step(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    weights = model / "model.safetensors"
    weights.write_bytes(b"x")
    weights.chmod(0o600)  # as transformers writes it
    with pytest.raises(
        PipelineError, match=r"model.safetensors is not readable .* `chmod -R a\+rX "
    ):
        readable_by_image(model)
    weights.chmod(0o644)
    readable_by_image(model)


def test_a_tasks_limits_become_the_containers_capped_at_this_machine() -> None:
    from google.protobuf import json_format
    from kfp import dsl
    from kfp.pipeline_spec import pipeline_spec_pb2

    from pipekit.memory import physical_memory
    from pipekit.pipeline.docker_local import PodLimits
    from pipekit.pipeline.images import CPU_IMAGE

    @dsl.component(base_image=CPU_IMAGE)
    def step():  # no annotations: this module's `from __future__` would make them strings
        pass

    @dsl.pipeline
    def one_step():
        step().set_cpu_limit("1500m").set_memory_limit("15Mi")
        step().set_memory_limit("32Gi").set_accelerator_type(
            "nvidia.com/gpu"
        ).set_accelerator_limit(1)

    # the limits as KFP compiles them into the executor's container spec
    executors = one_step.pipeline_spec.deployment_spec.fields["executors"]
    specs = [
        json_format.ParseDict(
            json_format.MessageToDict(executor.struct_value.fields["container"].struct_value),
            pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec(),
        )
        for executor in executors.struct_value.fields.values()
    ]
    cpu_step, gpu_step = sorted((PodLimits.of(c) for c in specs), key=lambda lim: lim.gpu)
    assert cpu_step == PodLimits(1.5, 15 * 2**20)  # 15Mi exactly: KFP's GB float, rounded
    cores = os.cpu_count() or 1
    assert cpu_step.docker_args() == {
        "nano_cpus": int(min(1.5, cores) * 1e9),
        "mem_limit": 15 * 2**20,
        "memswap_limit": 15 * 2**20,
    }
    huge = PodLimits(10_000.0, 2**60).docker_args()
    assert huge["nano_cpus"] == cores * 10**9 and huge["mem_limit"] == physical_memory()
    assert PodLimits(None, None).docker_args() == {}
    # a GPU step: /dev/shm as its pod mounts it (16Gi), never above its memory limit
    assert gpu_step == PodLimits(None, 32 * 2**30, gpu=True)
    assert gpu_step.docker_args()["shm_size"] == min(16 * 2**30, physical_memory())
    assert PodLimits(None, 2**30, gpu=True).docker_args()["shm_size"] == 2**30
