import json
from pathlib import Path

import pytest
import torch

from voxelflex.config import load_config
from voxelflex.paths import RunPaths
from voxelflex.steps import preprocess, train


@pytest.fixture
def prepared(demo_config: Path):
    cfg = load_config(str(demo_config))
    preprocess.run(cfg)
    return demo_config


def test_train_writes_loadable_checkpoints_history_and_log(prepared: Path) -> None:
    from voxelflex.cli import main

    assert main(["train", "--config", str(prepared), "-q"]) == 0
    paths = RunPaths.from_config(load_config(str(prepared)))
    history = json.loads(Path(paths.training_history).read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    assert all(h["samples_per_s"] > 0 and 0 <= h["data_wait_fraction"] <= 1 for h in history)
    for uri in (paths.best_model, paths.latest_model, paths.epoch_model(1), paths.epoch_model(2)):
        ckpt = torch.load(uri, weights_only=True)
        assert {
            "model_state",
            "model_config",
            "temp_scaling",
            "optimizer_state",
            "scheduler_state",
            "rng_state",
            "epoch",
        } <= set(ckpt)
        assert ckpt["temp_scaling"] == {"temp_min": 320.0, "temp_max": 450.0}
    assert "epoch 2" in Path(paths.log_file).read_text()
    assert Path(paths.resolved_config("train")).exists()


def test_resume_continues_exactly_where_it_stopped(tmp_path: Path, demo_data) -> None:
    from tests.conftest import write_config

    def run(dirname: str, epochs_then_resume: list[int]) -> dict:
        cfg_path = write_config(
            tmp_path / dirname,
            demo_data,
            {
                "model": {
                    "dropout_rate": 0.2,
                    "base_filters": 4,
                    "num_residual_blocks": 1,
                    "head_hidden": 16,
                }
            },
        )
        for i, epochs in enumerate(epochs_then_resume):
            cfg = load_config(str(cfg_path), [f"training.num_epochs={epochs}"])
            if i == 0:
                preprocess.run(cfg)
            train.run(cfg, resume=i > 0)
        return torch.load(RunPaths.from_config(cfg).latest_model, weights_only=True)

    straight = run("straight", [3])
    resumed = run("resumed", [1, 3])
    assert straight["epoch"] == resumed["epoch"] == 2
    for key, value in straight["model_state"].items():
        torch.testing.assert_close(resumed["model_state"][key], value, rtol=0, atol=0)
    assert [h["train_loss"] for h in straight["history"]] == [
        h["train_loss"] for h in resumed["history"]
    ]


def test_early_stopping_stops_on_stale_validation_r(prepared: Path) -> None:
    # a learning rate near 0: only BatchNorm statistics move, so validation r stalls early
    cfg = load_config(
        str(prepared),
        [
            "training.learning_rate=1e-12",
            "training.num_epochs=8",
            "training.early_stopping_patience=2",
            "training.scheduler=none",
        ],
    )
    res = train.run(cfg)
    history = json.loads(Path(res.history).read_text())
    assert res.epochs_run == len(history) < 8
    best_epoch = max(history, key=lambda h: h["val_pearson"])["epoch"]
    assert best_epoch == res.epochs_run - 2  # stopped after exactly `patience` stale epochs


def test_smoke_check_runs_one_batch(prepared: Path, capsys) -> None:
    from voxelflex.cli import main

    assert main(["train", "--config", str(prepared), "--smoke", "-q"]) == 0
    assert "smoke check passed" in capsys.readouterr().out


def test_resume_without_checkpoint_is_a_clear_error(prepared: Path, capsys) -> None:
    from voxelflex.cli import main

    assert main(["train", "--config", str(prepared), "--resume", "-q"]) == 2
    err = capsys.readouterr().err
    assert "--resume: no checkpoint at" in err and "Traceback" not in err


@pytest.mark.parametrize("store", ["local", "memory"])
def test_outputs_go_to_any_fsspec_uri(demo_config: Path, store: str, tmp_path: Path) -> None:
    """`output.base_dir` and `data.processed_dir` may be URIs (object storage in a cluster)."""
    import fsspec

    from voxelflex.steps import evaluate

    root = str(tmp_path) if store == "local" else f"memory://{tmp_path.name}"
    cfg = load_config(
        str(demo_config),
        [f"output.base_dir={root}/out", f"data.processed_dir={root}/proc", "training.num_epochs=1"],
    )
    preprocess.run(cfg)
    train.run(cfg)
    res = evaluate.run(cfg)
    fs, _ = fsspec.core.url_to_fs(root)
    paths = RunPaths.from_config(cfg)
    for uri in (
        paths.master_samples,
        paths.best_model,
        paths.latest_model,
        paths.temp_scaling,
        paths.training_history,
        paths.failed_domains,
        res.metrics,
        res.predictions,
    ):
        assert fs.exists(uri), uri
    with fsspec.open(paths.best_model, "rb") as fh:
        assert "model_state" in torch.load(fh, weights_only=True)
    if store == "memory":
        fs.rm(f"/{tmp_path.name}", recursive=True)
