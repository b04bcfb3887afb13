"""train_model: the MLM -> FPS -> CLF chain, a kill and --resume, the one-batch smoke check,
data-parallel training under a real torchrun, and the errors a user meets."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from belka.cli import main
from belka.steps import train_model
from pipekit.checkpoint import load_checkpoint
from pipekit.timing import TIMINGS
from tests.belka.conftest import run_belka
from tests.conftest import free_port


def _encoder(uri: Path) -> dict[str, torch.Tensor]:
    state = load_checkpoint(str(uri))["model_state"]
    return {k: v for k, v in state.items() if k.startswith("encoder.")}


def test_each_mode_starts_from_the_previous_modes_encoder(prepared_cfg, monkeypatch) -> None:
    models = Path(prepared_cfg.data.working) / "models"
    mlm = train_model.run(prepared_cfg, "mlm")
    assert mlm.epochs_run == 2 and mlm.best_val_loss < 3.5  # below log(vocab) guessing
    started: dict[str, dict[str, torch.Tensor]] = {}
    real = train_model.start_from

    def spy(model, spec, uri):
        epoch = real(model, spec, uri)
        started[spec.mode] = {k: v.clone() for k, v in model.state_dict().items()}
        return epoch

    monkeypatch.setattr(train_model, "start_from", spy)
    train_model.run(prepared_cfg, "fps", model_path=str(models / "mlm" / "best_model.pt"))
    clf = train_model.run(prepared_cfg, "clf", model_path=str(models / "fps" / "best_model.pt"))
    for mode, source in (("fps", "mlm"), ("clf", "fps")):
        want = _encoder(models / source / "best_model.pt")
        assert all(torch.equal(started[mode][k], v) for k, v in want.items()), mode
    assert set(clf.val_metrics["per_protein"]) == {"BRD4", "HSA", "sEH"}
    history = json.loads((models / "clf" / "training_history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    assert 0 <= history[-1]["val_map"] <= 1


@pytest.mark.slow
def test_a_killed_training_resumes_to_the_same_weights(prepared_cfg, tmp_path: Path) -> None:
    from belka.config import SCHEMA

    config = tmp_path / "run.yaml"
    SCHEMA.save_resolved(prepared_cfg, str(config))
    args = ("--step", "train_model", "--mode", "clf", "--set", "training.epochs=3")
    killed = run_belka(config, *args, crash="train_model.latest_saved:2")
    assert killed.returncode == -9, killed.stderr[-2000:]
    models = Path(prepared_cfg.data.working) / "models" / "clf"
    assert load_checkpoint(str(models / "latest_model.pt"))["epoch"] == 2
    resumed = run_belka(config, *args, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    after = load_checkpoint(str(models / "latest_model.pt"))
    # the same run, never killed, in a copy of the inputs
    shutil.copytree(
        prepared_cfg.data.working, tmp_path / "whole", ignore=shutil.ignore_patterns("models")
    )
    whole = run_belka(config, *args, "--output_dir", str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr[-2000:]
    ref = load_checkpoint(str(tmp_path / "whole" / "models" / "clf" / "latest_model.pt"))
    assert after["epoch"] == ref["epoch"] == 3
    for k, v in ref["model_state"].items():
        assert torch.equal(after["model_state"][k], v), k

    def timeless(h):
        return [{k: v for k, v in e.items() if k not in TIMINGS} for e in h]

    assert timeless(after["train_state"]["history"]) == timeless(ref["train_state"]["history"])


def test_the_smoke_check_and_the_errors_a_user_meets(prepared_cfg, tmp_path, capsys) -> None:
    from belka.config import SCHEMA

    config = tmp_path / "run.yaml"
    SCHEMA.save_resolved(prepared_cfg, str(config))
    base = ["--quiet", "--config", str(config)]
    assert main([*base, "--step", "train_model", "--mode", "fps", "--smoke"]) == 0
    assert "smoke: one fps batch" in capsys.readouterr().out
    cases = [
        (["--step", "train_model"], "needs --mode"),
        (
            ["--step", "train_model", "--mode", "clf", "--set", "model.vocab_size=5"],
            "'model.vocab_size': 5 is smaller than vocab.txt",
        ),
        (
            ["--step", "train_model", "--mode", "clf", "--set", "model.depth=15"],
            "'model.depth': 15 is not divisible by model.num_heads",
        ),
        (
            ["--step", "train_model", "--mode", "clf", "--set", "training.pateince=3"],
            "training.pateince",
        ),
        (
            ["--step", "make_submission", "--model_path", str(tmp_path / "none.pt")],
            "none.pt (run --step train_model --mode clf first)",
        ),
    ]
    for args, message in cases:
        assert main([*base, *args]) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    # a model of another mode, or of another shape, named as the starting point
    assert (
        main([*base, "--step", "train_model", "--mode", "mlm", "--set", "training.epochs=1"]) == 0
    )
    mlm = Path(prepared_cfg.data.working) / "models" / "mlm" / "best_model.pt"
    capsys.readouterr()
    assert main([*base, "--step", "make_submission", "--model_path", str(mlm)]) == 2
    assert "is a mlm model; make_submission needs a clf model" in capsys.readouterr().err
    args = [
        "--step",
        "train_model",
        "--mode",
        "clf",
        "--model_path",
        str(mlm),
        "--set",
        "model.num_layers=3",
    ]
    assert main([*base, *args]) == 2
    assert "does not fit this model" in capsys.readouterr().err


@pytest.mark.slow
def test_torchrun_trains_data_parallel_on_each_molecule_once(prepared_cfg, tmp_path) -> None:
    from belka.config import SCHEMA
    from belka.data.store import Store

    config = tmp_path / "run.yaml"
    SCHEMA.save_resolved(prepared_cfg, str(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PET_", "RANK", "WORLD"))}
    env.update(OMP_NUM_THREADS="1", PIPEKIT_DIST_TIMEOUT_S="90")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        f"--master_port={free_port()}",
        "-m",
        "belka",
        "--quiet",
        "--config",
        str(config),
        "--step",
        "train_model",
        "--mode",
        "clf",
        "--n_workers",
        "1",
        "--set",
        "training.epochs=2",
        "--set",
        "training.batch_size=50",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    work = Path(prepared_cfg.data.working)
    history = json.loads((work / "models" / "clf" / "training_history.json").read_text())
    want = Store.open(str(work / "belka.tfr")).count((0,))
    assert [h["molecules"] for h in history] == [want, want]
    assert all(h["val_loss"] > 0 for h in history)
