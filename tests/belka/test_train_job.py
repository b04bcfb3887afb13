"""train_model as a TrainJob (pipekit.trainjob): the job's nodes run belka's own torchrun
command against the artifacts' URIs, through the stand-in for Kubeflow Trainer that
VoxelFlex's TrainJob tests use (each node a process, the PET_* variables set)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from belka.data.store import Store
from belka.paths import Layout
from belka.steps import train_job
from belka.steps.generate_parquet import SUBSET_TEST, SUBSET_TRAIN
from pipekit.checkpoint import load_checkpoint
from pipekit.trainjob import TrainJobFailed, trainjob_body
from tests.trainer_standin import LocalTrainer


def _spec(layout: Layout, mode: str, previous: str | None = None):
    return train_job.pipeline_spec(
        mode, layout, previous, "img:1", 2, 0, "", "torch-distributed", "", "", namespace="ns"
    )


def test_the_trainjob_runs_belkas_step_command_on_every_node(prepared_cfg, tmp_path) -> None:
    layout = replace(Layout.of(prepared_cfg), models=(("fps", "s3://b/run/fps/model"),))
    spec = _spec(layout, "fps", "s3://b/run/mlm/model/best_model.pt")
    trainer = trainjob_body(spec)["spec"]["trainer"]
    cmd = trainer["command"]
    assert cmd[:3] == ["torchrun", "-m", "belka"] and trainer["numNodes"] == 2

    def flag(name: str) -> str:
        return cmd[cmd.index(name) + 1]

    assert flag("--config") == "s3://b/run/fps/model/train_job_config.yaml"
    assert flag("--model_dir") == "s3://b/run/fps/model" and flag("--store") == layout.store
    assert flag("--model_path") == "s3://b/run/mlm/model/best_model.pt" and "--resume" in cmd
    assert flag("--vocab") == layout.vocab and flag("--val_store") == layout.val_store
    assert spec.name.startswith("belka-train-") and spec.system == "belka"


@pytest.mark.slow
def test_a_two_node_trainjob_trains_a_mode_data_parallel(prepared_cfg, tmp_path: Path) -> None:
    layout = Layout.of(prepared_cfg)
    cluster = LocalTrainer(tmp_path)
    spec = _spec(layout, "mlm")
    res = train_job.run(prepared_cfg, "mlm", layout, spec, cluster, poll_s=1, timeout_s=240)
    assert cluster.deleted == [spec.name]
    history = json.loads((Path(layout.model_dir("mlm")) / "training_history.json").read_text())
    assert res.epochs_run == len(history) == prepared_cfg.training.epochs
    # both nodes together saw each training molecule once per epoch
    store = Store.open(layout.store)
    assert history[-1]["molecules"] == store.count((SUBSET_TRAIN, SUBSET_TEST))
    assert load_checkpoint(f"{layout.model_dir('mlm')}/best_model.pt")["epoch"] == res.best_epoch
    assert "rank 0 of 2" in Path(layout.log).read_text()


@pytest.mark.slow
def test_a_failing_trainjob_reports_the_nodes_error(prepared_cfg, tmp_path: Path) -> None:
    layout = replace(Layout.of(prepared_cfg), store=str(tmp_path / "no_store"))
    cluster = LocalTrainer(tmp_path)
    spec = _spec(layout, "mlm")
    with pytest.raises(TrainJobFailed, match="not a finished feature store"):
        train_job.run(prepared_cfg, "mlm", layout, spec, cluster, poll_s=1, timeout_s=240)
    assert cluster.deleted == [spec.name]
