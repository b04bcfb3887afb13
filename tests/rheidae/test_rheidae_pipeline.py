"""The Rheidae pipeline through kfp.local, and its compiled YAML."""

from __future__ import annotations

from pathlib import Path

import yaml


def test_the_pipeline_runs_locally_end_to_end(preprocessed, tmp_path: Path, capsys, runner) -> None:
    from rheidae.cli import main

    d = preprocessed
    argv = [
        "pipeline",
        "run",
        "--local",
        "--pre-process",
        str(d.pre_process),
        "--config",
        str(d.model_config),
        "--train-parms",
        str(d.train_parms),
        "--set",
        "training.epochs=20",
        "--pipeline-root",
        str(tmp_path / "kfp"),
        "--runner",
        runner,
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    for line in (
        "preprocess/preprocessed",
        "points = 1500",
        "train/model",
        "improvement_over_box3d",
        "visualize/report",
    ):
        assert line in out, out
    ratio = float(out.split("improvement_over_box3d = ")[1].split()[0])
    assert ratio > 1.0  # the residual model beats Box3D on the held-out split


def test_compiled_yaml_is_current_and_train_is_on_a_gpu_node(tmp_path: Path) -> None:
    from lab_pipelines import COMPILED_DIR, pipelines_of
    from pipekit.pipeline.compile import compile_pipelines

    (fresh,) = compile_pipelines(pipelines_of("rheidae"), tmp_path)
    committed = COMPILED_DIR / fresh.name
    assert fresh.read_text() == committed.read_text(), (
        f"{committed} is stale: run `rheidae pipeline compile` and commit it"
    )
    spec, platform = yaml.safe_load_all(committed.read_text())
    executors = spec["deploymentSpec"]["executors"]
    assert executors["exec-train"]["container"]["resources"]["accelerator"]["resourceCount"] == "1"
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-train"]
    assert k8s["tolerations"][0]["key"] == "nvidia.com/gpu" and k8s["nodeSelector"]
    assert "accelerator" not in executors["exec-preprocess"]["container"].get("resources", {})
