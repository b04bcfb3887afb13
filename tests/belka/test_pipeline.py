"""The Belka pipeline through kfp.local on a tiny demo, the full CLI run, and the compiled
YAML."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import yaml

from belka.cli import main


def test_the_pipeline_runs_locally_end_to_end(belka_config, belka_demo, tmp_path, capsys, runner):
    argv = [
        "pipeline",
        "run",
        "--local",
        "--config",
        str(belka_config),
        "--set",
        "training.epochs=1",
        "--pipeline-root",
        str(tmp_path / "kfp"),
        "--runner",
        runner,
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    for line in (
        "generate-parquet/molecules",
        "train-model-3/model",
        "val_map",
        "model_non_shared_map",
        "visualize/report",
    ):
        assert line in out, out
    work = tmp_path / "work"
    sub = pd.read_csv(work / "submission.csv")
    test = pd.read_parquet(belka_demo.root / "raw" / "test.parquet")
    assert sorted(sub["id"]) == sorted(test["id"]) and sub["binds"].between(0, 1).all()
    for mode in ("mlm", "fps", "clf"):
        assert (work / "models" / mode / "best_model.pt").is_file()
    report = json.loads((work / "evaluation_metrics.json").read_text())
    assert set(report["model"]) == {"all", "shared", "non_shared"}
    # the published outputs are what the step commands read: visualize runs on them
    assert main(["--quiet", "--config", str(belka_config), "--step", "visualize"]) == 0
    assert (work / "visualizations" / "precision_recall_non_shared.png").is_file()


def test_the_whole_plan_runs_from_the_cli(belka_config, tmp_path, capsys) -> None:
    assert main(["--quiet", "--config", str(belka_config), "--set", "training.epochs=1"]) == 0
    out = capsys.readouterr().out
    for step in (
        "generate_parquet:",
        "get_vocab:",
        "make_dataset:",
        "create_val_dataset:",
        "train_model mlm:",
        "train_model fps:",
        "train_model clf:",
        "make_submission:",
        "visualize:",
    ):
        assert step in out, out
    assert "validation mAP, non-shared blocks: model" in out


def test_compiled_yaml_is_current_and_training_is_on_gpu_nodes(tmp_path: Path) -> None:
    from lab_pipelines import COMPILED_DIR, pipelines_of
    from pipekit.pipeline.compile import compile_pipelines

    (fresh,) = compile_pipelines(pipelines_of("belka"), tmp_path)
    committed = COMPILED_DIR / fresh.name
    assert fresh.read_text() == committed.read_text(), (
        f"{committed} is stale: run `belka pipeline compile` and commit it"
    )
    spec, platform = yaml.safe_load_all(committed.read_text())
    executors = spec["deploymentSpec"]["executors"]
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for name in (
        "exec-train-model",
        "exec-train-model-2",
        "exec-train-model-3",
        "exec-make-submission",
    ):
        assert executors[name]["container"]["resources"]["accelerator"]["resourceCount"] == "1"
        assert k8s[name]["tolerations"][0]["key"] == "nvidia.com/gpu" and k8s[name]["nodeSelector"]
    assert "accelerator" not in executors["exec-generate-parquet"]["container"].get("resources", {})
    tasks = spec["root"]["dag"]["tasks"]
    assert (
        tasks["train-model-2"]["inputs"]["artifacts"]["previous"]["taskOutputArtifact"][
            "producerTask"
        ]
        == "train-model"
    )
    assert (
        tasks["train-model-3"]["inputs"]["artifacts"]["previous"]["taskOutputArtifact"][
            "producerTask"
        ]
        == "train-model-2"
    )
