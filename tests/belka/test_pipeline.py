"""The Belka pipeline through kfp.local on a tiny demo, the full CLI run, and the compiled
YAML."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from belka.cli import main
from belka.config import load_config
from belka.data.store import Store
from belka.paths import Layout
from belka.steps import make_dataset
from tests.belka.conftest import write_config
from tests.belka.test_store import _files
from tests.plotcheck import FigureChecks, report_problems


def test_the_pipeline_runs_locally_end_to_end(
    belka_config, belka_demo, tmp_path, capsys, runner, monkeypatch
):
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
    # each step's own log, not the KFP executor's bookkeeping (that is for -v)
    assert "Got executor_input" not in out and '"parameterValues"' not in out
    assert "Dataset( name=" not in out and "uri='" not in out  # kfp.local's artifact reprs
    assert "kept from an earlier run" in out  # a make_dataset_part task's own log line
    for line in (
        "generate-parquet/molecules",
        "train-model-3/model",
        "  train-model: train mlm\n",  # each training task with what the UI calls it
        "  train-model-3: train clf\n",
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
    # make_dataset fanned out over 4 tasks gathered the store one process makes, byte for byte
    parts = list((tmp_path / "kfp").glob("*/for-loop-*/make-dataset-part/shards/belka.tfr"))
    assert len(parts) == 4 and not (work / "belka.tfr" / "part.json").exists()
    cfg = load_config(str(belka_config))
    one = tmp_path / "one"
    make_dataset.run(cfg, replace(Layout.of(cfg), store=str(one / "belka.tfr"), working=str(one)))
    if runner == "subprocess":
        assert _files(one / "belka.tfr") == _files(work / "belka.tfr")
    else:  # the image's Python (Debian's 3.11.2) writes a zip's headers unlike the host's
        ours, ref = Store.open(str(work / "belka.tfr")), Store.open(str(one / "belka.tfr"))
        assert [s["rows"] for s in ours.shards] == [s["rows"] for s in ref.shards]
        for i in range(len(ref.shards)):
            x, y = ours.read(i), ref.read(i)
            assert all(np.array_equal(x[k], y[k]) for k in y), i
    # the published outputs are what the step commands read: visualize runs on them
    figures = FigureChecks().install(monkeypatch)
    assert main(["--quiet", "--config", str(belka_config), "--step", "visualize"]) == 0
    assert (work / "visualizations" / "precision_recall_non_shared.png").is_file()
    assert len(figures.seen) == 4 and figures.problems == []
    page = (work / "visualizations" / "index.html").read_text()
    assert report_problems(page, n_plots=4, caveat=True) == []
    assert "model minus fingerprint_logreg (paired)" in page


def _with_duplicated_test_rows(demo, dest: Path) -> pd.DataFrame:
    """The demo's raw folder, with test.parquet listing what the competition's layout allows
    and a merge by molecule loses: two training molecules (all three proteins, new ids), a
    test molecule twice for one protein under a second id, a row without SMILES and a row of
    an unknown protein. Returns the new test table."""
    import shutil

    shutil.copytree(demo.root / "raw", dest)
    train = pd.read_parquet(dest / "train.parquet")
    test = pd.read_parquet(dest / "test.parquet")
    next_id = int(max(train["id"].max(), test["id"].max())) + 1
    seen = train[train["molecule_smiles"].isin(train["molecule_smiles"].unique()[:2])]
    again = test[test["protein_name"] == "BRD4"].head(1)
    blank = test.head(1).assign(molecule_smiles="")
    alien = test.head(1).assign(protein_name="CA2")
    added = pd.concat([seen.drop(columns="binds"), again, blank, alien], ignore_index=True)
    added["id"] = np.arange(next_id, next_id + len(added))
    out = pd.concat([test, added[test.columns]], ignore_index=True)
    out.to_parquet(dest / "test.parquet", index=False)
    return out


def test_the_whole_plan_runs_from_the_cli(belka_demo, tmp_path, capsys) -> None:
    """Every test id reaches submission.csv exactly once, whatever the duplication in the
    inputs; a test row lost on the way is a non-zero exit, not a short file."""
    test = _with_duplicated_test_rows(belka_demo, tmp_path / "raw")
    config = write_config(tmp_path, belka_demo, {"data": {"root": str(tmp_path / "raw")}})
    assert main(["--quiet", "--config", str(config), "--set", "training.epochs=1"]) == 0
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
    # every mean AP with its 95% interval, the positives counted, and the paired difference
    line = next(x for x in out.splitlines() if "validation mAP [95% CI], non-shared" in x)
    assert re.search(r"positives BRD4 \d+, HSA \d+, sEH \d+\): model [\d.]+ \[[\d.]+, ", line)
    assert re.search(r"model - fingerprint_logreg: [+-][\d.]+ \[[+-][\d.]+, [+-][\d.]+\]", out)
    sub = pd.read_csv(tmp_path / "work" / "submission.csv")
    assert sub["id"].is_unique and sorted(sub["id"]) == sorted(test["id"])
    assert f"make_submission: {len(test)} rows (2 at prevalence)" in out  # blank, alien
    # a kept test row missing from the molecule table: refused, the old file kept
    table = tmp_path / "work" / "belka.parquet"
    mols = pd.read_parquet(table)
    mols.drop(index=mols.index[mols["subset"] == 2][0]).to_parquet(table, index=False)
    assert main(["--quiet", "--config", str(config), "--step", "make_submission"]) != 0
    assert "have no row in" in capsys.readouterr().err
    assert len(pd.read_csv(tmp_path / "work" / "submission.csv")) == len(test)


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
    branches = {
        name: spec["components"][name]["dag"]["tasks"]
        for name in ("comp-condition-3", "comp-condition-4")
    }
    one_gpu, jobs = branches["comp-condition-3"], branches["comp-condition-4"]
    for tasks, trainer in ((one_gpu, "train-model"), (jobs, "train-job")):
        for n, before in ((2, trainer), (3, f"{trainer}-2")):  # mlm -> fps -> clf
            prev = tasks[f"{trainer}-{n}"]["inputs"]["artifacts"]["previous"]
            assert prev["taskOutputArtifact"]["producerTask"] == before
    assert [jobs[f"train-job{k}"]["taskInfo"]["name"] for k in ("", "-2", "-3")] == [
        f"train {m} (TrainJob)" for m in ("mlm", "fps", "clf")
    ]
    # a TrainJob step forwards its GPUs, node selector and tolerations to the job's nodes
    job = executors["exec-train-job"]["container"]
    assert job["resources"]["accelerator"]["resourceCount"].endswith("gpus_per_node']}}")
    passed = {f["field"] for f in spec["components"]["comp-train-job"]["taskConfigPassthroughs"]}
    assert passed == {"RESOURCES", "KUBERNETES_NODE_SELECTOR", "KUBERNETES_TOLERATIONS"}
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["featurize_tasks"]["defaultValue"] == 4
    assert params["distributed_training"]["defaultValue"] is False
    fan = spec["components"]["comp-for-loop-1"]["dag"]["tasks"]["make-dataset-part"]
    assert fan["componentRef"]["name"] == "comp-make-dataset-part"
    gather = spec["root"]["dag"]["tasks"]["make-dataset"]["inputs"]["artifacts"]["parts"]
    assert gather["taskOutputArtifact"]["producerTask"] == "for-loop-1"
