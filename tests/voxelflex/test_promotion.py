"""Promotion end to end: the whole pipeline through kfp.local, twice, against a pinned
baseline. A better model is promoted (the record names it); a worse one fails the run and
leaves the record, accepted model and all, untouched."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import metrics_report, write_config, write_json
from voxelflex.cli import main
from voxelflex.steps import gate
from voxelflex.steps.demo_data import make_demo_dataset


@pytest.mark.slow
def test_a_better_model_is_promoted_and_a_worse_one_fails_the_run(tmp_path: Path, capsys):
    data = make_demo_dataset(
        tmp_path / "data", n_domains=10, seed=5, min_residues=60, max_residues=120
    )
    record = tmp_path / "accepted" / "promotion.json"
    # the pinned baseline: an earlier model, r = 0.3 at every temperature
    weak = metrics_report({t: 0.3 for t in ("320", "348", "379", "413", "450")})
    base = write_json(tmp_path / "weak.json", weak)
    argv = ["gate", "--metrics", base, "--accepted", str(record), "--model", "s3://lab/weak"]
    assert main([*argv, "--run-id", "run-0"]) == 0

    def pipeline(name: str, training: dict) -> int:
        cfg = write_config(tmp_path / name, data, {"training": training})
        root = tmp_path / name / "kfp"
        argv = ["pipeline", "run", "--local", "--config", str(cfg), "--pipeline-root", str(root)]
        return main([*argv, "--param", f"accepted_metrics_uri={record}", "-q"])

    assert pipeline("better", {"num_epochs": 4, "chunk_size": 4, "shuffle_buffer_size": 256}) == 0
    promoted = json.loads(record.read_text())
    (train_model,) = (tmp_path / "better" / "kfp").glob("*/train/model")
    assert promoted["accepted"]["model_uri"] == str(train_model)
    assert promoted["accepted"]["run_id"]  # the pipeline run that produced it
    assert promoted["baseline"]["model_uri"] == "s3://lab/weak"  # pinned, not ratcheted
    assert promoted["best"]["model_uri"] == str(train_model)
    assert [h["model_uri"] for h in promoted["history"]] == ["s3://lab/weak", str(train_model)]
    assert gate.accepted_model(str(record)) == str(train_model)
    before = record.read_bytes()

    untrained = {"num_epochs": 1, "learning_rate": 1e-9}
    assert pipeline("worse", untrained) == 2
    err = capsys.readouterr().err
    assert "local pipeline run failed" in err and "evaluation-gate" in err  # failed there
    assert record.read_bytes() == before  # the accepted model stays the better one

    # the scheduled evaluation, given no model, evaluates the accepted one
    root = tmp_path / "nightly"
    inputs = {
        "voxel_file": data.voxel_file,
        "aggregated_rmsf_file": data.rmsf_csv,
        **{f"{s}_split_file": data.root / f"{s}_domains.txt" for s in ("train", "val", "test")},
        "accepted_metrics_uri": record,
        "promote": "false",
    }
    params = [a for k, v in inputs.items() for a in ("--param", f"{k}={v}")]
    argv = ["pipeline", "run", "--local", "--pipeline", "voxelflex_evaluation_pipeline"]
    assert main([*argv, "--pipeline-root", str(root), *params, "-q"]) == 0
    (report,) = root.glob("*/evaluate/evaluation/metrics/evaluation_metrics_test.json")
    evaluated = json.loads(report.read_text())["model_uri"]
    assert evaluated == str(train_model / "models" / "best_model.pt")
    assert record.read_bytes() == before
