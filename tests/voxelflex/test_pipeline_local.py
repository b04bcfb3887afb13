"""The whole Kubeflow pipelines on this machine through kfp.local, from the CLI: the main
one with promotion through its evaluation gate, the scheduled evaluation, the structure one."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from tests.conftest import metrics_report, write_config, write_json
from voxelflex.cli import main
from voxelflex.data.demo import TEMPERATURES as DEMO_TEMPERATURES
from voxelflex.steps import gate
from voxelflex.training.checkpoint import load_model

PRED_COLS = ["domain_id", "resid", "resname", "temperature", "predicted_rmsf", "target_rmsf"]


@pytest.mark.slow
def test_pipeline_runs_end_to_end_and_gates_what_it_promotes(
    tmp_path: Path, capsys, runner
) -> None:
    """The main pipeline from the CLI, mirror branch and all, against a pinned weak baseline:
    its model is promoted; the scheduled evaluation then evaluates the accepted model, and
    judging a worse model fails that run and leaves the record, accepted model and all,
    untouched. (One run of the whole pipeline serves both, to keep the suite within budget.)"""
    from voxelflex.steps.demo_data import make_demo_dataset

    # eight domains, three epochs: a model well above the pinned r = 0.3 (0.77-0.80 here)
    data = make_demo_dataset(
        tmp_path / "data", n_domains=8, seed=5, min_residues=40, max_residues=60
    )
    record = tmp_path / "accepted" / "promotion.json"
    weak_r = {f"{t:.0f}": 0.3 for t in DEMO_TEMPERATURES}
    weak = write_json(tmp_path / "weak.json", metrics_report(weak_r))
    weak_argv = ["gate", "--metrics", weak, "--accepted", str(record)]
    assert main([*weak_argv, "--model", "s3://lab/weak", "--run-id", "run-0"]) == 0
    capsys.readouterr()

    training = {"num_epochs": 3, "learning_rate": 0.003, "chunk_size": 4, "num_workers": 1}
    training["shuffle_buffer_size"] = 256
    cfg = write_config(tmp_path / "better", data, {"training": training})
    root = tmp_path / "kfp_root"
    store = tmp_path / "voxels.packed"
    argv = ["pipeline", "run", "--local", "--config", str(cfg), "--pipeline-root", str(root)]
    argv += ["--runner", runner, "--temperature", "300", "--temperature", "335"]
    argv += ["--mirror-uri", str(store), "--param", f"accepted_metrics_uri={record}"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    (run,) = root.iterdir()
    _check_main_run(run, printed, data, store, tmp_path)
    model_dir = run / "train" / "model"
    _check_promoted(record, model_dir)
    _check_step_commands(cfg, printed, (run / "visualize" / "plots").read_text())
    _check_the_scheduled_evaluation(root, data, cfg, record, model_dir, runner, capsys)


def _check_main_run(run: Path, printed: str, data, store: Path, tmp_path: Path) -> None:
    # each step's own log, not the KFP executor's bookkeeping (that is for -v)
    assert "Got executor_input" not in printed and '"parameterValues"' not in printed
    # nor kfp.local's artifact reprs: the summary below lists each artifact once
    assert "Model( name=" not in printed and "uri='" not in printed
    assert f"pipeline run: {run}" in printed
    outputs = {
        task: json.loads((run / task / "executor_output.json").read_text())
        for task in ("mirror", "preprocess", "train", "predict", "evaluate", "visualize")
    }
    for task, out in outputs.items():
        for name, entry in out.get("artifacts", {}).items():
            assert f"{task}/{name}: {entry['artifacts'][0]['uri']}" in printed

    # the mirror branch ran, and every later step read voxels from the packed store
    assert not (run / "original-voxels").exists()
    mirror_metrics = outputs["mirror"]["artifacts"]["metrics"]["artifacts"][0]["metadata"]
    assert mirror_metrics["residues"] == data.n_residues
    assert (store / "index.parquet").is_file()
    # written by parallel writers (mirror_writers=4 by default), the same as one process
    from tests.voxelflex.test_mirror import _store_contents
    from voxelflex.steps import mirror

    assert len(list(run.glob("for-loop-2-iteration-*"))) == 4  # one per writer
    single = tmp_path / "single.packed"
    mirror.run(str(data.voxel_file), str(single))
    assert _store_contents(str(store)) == _store_contents(str(single))
    for task, out_dir in [
        ("preprocess", "metadata"),
        ("train", "model"),
        ("evaluate", "evaluation"),
    ]:
        used = yaml.safe_load((run / task / out_dir / f"resolved_config_{task}.yaml").read_text())
        assert used["input"]["voxel_file"] == str(store)

    meta = run / "preprocess" / "metadata"
    assert (meta / "master_samples.parquet").is_file()
    assert (meta / "models" / "temp_scaling_params.json").is_file()

    model_dir = run / "train" / "model"
    loaded = load_model(str(model_dir / "models" / "best_model.pt"), torch.device("cpu"))
    # `settings` reached the component: the demo's small model, not the default width
    resolved = yaml.safe_load((model_dir / "resolved_config_train.yaml").read_text())
    assert (
        resolved["model"]["base_filters"] == 4 == loaded.checkpoint["model_config"]["base_filters"]
    )
    assert resolved["training"]["num_epochs"] == 3
    train_metrics = outputs["train"]["artifacts"]["metrics"]["artifacts"][0]["metadata"]
    assert train_metrics["epochs_run"] == 3 and train_metrics["samples_per_s"] > 0

    (preds_csv,) = (run / "predict" / "predictions" / "metrics").glob("predictions_test_*.csv")
    preds = pd.read_csv(preds_csv)
    assert list(preds.columns) == PRED_COLS
    assert set(preds.temperature) == {300.0, 335.0} and (preds.predicted_rmsf > 0).all()

    ev = outputs["evaluate"]["artifacts"]["metrics"]["artifacts"][0]["metadata"]
    assert {"pearson", "rmse", "per_domain_pearson_320K", "per_domain_pearson_450K"} <= set(ev)
    summary = run / "evaluate" / "evaluation" / "metrics" / "evaluation_summary_test.md"
    assert (run / "evaluate" / "report").read_text() == summary.read_text()
    assert (run / "evaluation-gate").is_dir()

    figures = run / "visualize" / "figures" / "visualizations"
    pngs = list(figures.glob("*.png"))
    assert len(pngs) >= 5
    page = (run / "visualize" / "plots").read_text()
    assert page.count("data:image/png;base64,") == len(pngs)
    assert "Synthetic data." in page  # the demo says so, through the packed store too


def _check_promoted(record: Path, model_dir: Path) -> None:
    """Promoted over the pinned baseline, which stays pinned (not ratcheted)."""
    evaluated = model_dir.parent.parent / "evaluate" / "evaluation" / "metrics"
    promoted = json.loads(record.read_text())
    assert promoted["accepted"]["model_uri"] == str(model_dir)
    assert promoted["accepted"]["run_id"]  # the pipeline run that produced it
    report = json.loads((evaluated / "evaluation_metrics_test.json").read_text())
    assert promoted["accepted"]["metrics"] == report
    assert promoted["baseline"]["model_uri"] == "s3://lab/weak"
    assert promoted["best"]["model_uri"] == str(model_dir)
    assert [h["model_uri"] for h in promoted["history"]] == ["s3://lab/weak", str(model_dir)]
    assert gate.accepted_model(str(record)) == str(model_dir)


def _check_step_commands(cfg: Path, printed: str, page: str) -> None:
    """The step commands of docs/voxelflex.md work as written after a pipeline run: its
    outputs are published to the config's run folder, and the report is a file a browser
    opens."""
    from voxelflex.config import load_config
    from voxelflex.paths import RunPaths

    paths = RunPaths.from_config(load_config(str(cfg)))
    report = Path(paths.run_dir) / "visualizations" / "index.html"
    assert f"report (open in a browser): {report}" in printed
    assert report.read_text() == page
    assert Path(paths.master_samples).is_file() and Path(paths.best_model).is_file()
    assert Path(paths.processed_temp_scaling).is_file()  # another run may train on it
    base = ["--config", str(cfg), "-q"]
    assert main(["predict", *base, "--split", "test", "--temperature", "310"]) == 0
    assert main(["visualize", *base]) == 0
    assert "Synthetic data." in report.read_text()


def _check_the_scheduled_evaluation(
    root: Path, data, cfg: Path, record: Path, model_dir: Path, runner: str, capsys
) -> None:
    """The scheduled evaluation pipeline: given no model, it evaluates the accepted one; given a
    worse one (trained with a learning rate too small to move it), its gate fails the run and
    the record stays as it was."""
    before = record.read_bytes()
    inputs = {
        "voxel_file": data.voxel_file,
        "aggregated_rmsf_file": data.rmsf_csv,
        **{f"{s}_split_file": data.root / f"{s}_domains.txt" for s in ("train", "val", "test")},
        "accepted_metrics_uri": record,
    }
    params = [a for k, v in inputs.items() for a in ("--param", f"{k}={v}")]
    argv = ["pipeline", "run", "--local", "--pipeline", "voxelflex_evaluation_pipeline", "-q"]
    # the main run's pipeline root: the accepted model lies under it, which a container sees
    # (--runner docker mounts the root and the paths parameters name, not paths in files)
    argv += ["--runner", runner, "--pipeline-root", str(root), *params]
    assert main([*argv, "--param", "promote=false"]) == 0
    evaluation = "voxelflex-evaluation-*/evaluate/evaluation/metrics/evaluation_metrics_test.json"
    (report,) = root.glob(evaluation)
    evaluated = json.loads(report.read_text())["model_uri"]
    assert evaluated == str(model_dir / "models" / "best_model.pt")
    assert record.read_bytes() == before

    # another run of the same preprocess (the pipeline published it to the config's folder)
    untrained = ["output.run_name=worse", "training.num_epochs=1", "training.learning_rate=1e-9"]
    sets = [a for s in untrained for a in ("--set", s)]
    assert main(["train", "--config", str(cfg), "-q", *sets]) == 0
    from voxelflex.config import load_config
    from voxelflex.paths import RunPaths

    worse = RunPaths.from_config(load_config(str(cfg), untrained)).run_dir
    capsys.readouterr()
    assert main([*argv, "--param", f"model_uri={worse}"]) == 2
    err = capsys.readouterr().err
    assert "local pipeline run failed" in err and "evaluation-gate" in err  # failed there
    assert record.read_bytes() == before  # the accepted model stays the better one


@pytest.mark.slow
def test_structure_pipeline_runs_locally(tmp_path: Path, capsys, runner) -> None:
    from tests.conftest import ideal_residue, write_pdb, write_tiny_checkpoint

    model_dir = tmp_path / "model"  # laid out like a train step's Model artifact
    write_tiny_checkpoint(model_dir / "models" / "best_model.pt")
    residues = [("ALA", "A", i + 1, ideal_residue([3.8 * i, 0, 0])) for i in range(4)]
    structure = write_pdb(tmp_path / "mine.pdb", residues)
    root = tmp_path / "root"
    argv = ["pipeline", "run", "--local", "--pipeline", "voxelflex_structure_pipeline"]
    argv += ["--runner", runner]
    params = [f"model_uri={model_dir}", f"structures=[{structure}]", "temperatures=[300, 330]"]
    flags = [a for p in params for a in ("--param", p)]
    assert main([*argv, "--pipeline-root", str(root), *flags, "-q"]) == 0
    (run,) = root.iterdir()
    out = run / "predict-structures" / "predictions"
    table = pd.read_csv(out / "predictions_structures.csv")
    assert len(table) == 8 and set(table.temperature) == {300.0, 330.0}
    assert (out / "mine_rmsf_300K.pdb").is_file() and (out / "mine_rmsf_330K.pdb").is_file()
    assert (run / "voxelize-structures" / "voxels" / "voxels.hdf5").is_file()
    page = (run / "predict-structures" / "plots").read_text()
    assert page.count("data:image/png;base64,") == 1  # one chain, one profile


def test_a_failing_local_run_fails_fast_with_one_line(
    tmp_path: Path, demo_data, capsys, runner
) -> None:
    import time

    cfg = write_config(tmp_path, demo_data)
    argv = ["pipeline", "run", "--local", "--config", str(cfg), "--pipeline-root", str(tmp_path)]
    argv += ["--runner", runner]
    start = time.monotonic()
    assert main([*argv, "--set", f"input.voxel_file={tmp_path / 'absent.hdf5'}", "-q"]) == 2
    assert time.monotonic() - start < 60  # no retry backoffs locally
    err = capsys.readouterr().err
    # the first step that reads the inputs fails: the fingerprint of what they hold
    assert "local pipeline run failed" in err and "fingerprint-inputs" in err
