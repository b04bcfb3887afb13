"""Training that loses nothing and says so: kills at write points, divergence, one writer per
run folder (a file lock; a lease in object storage), runs that share one preprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import write_config
from voxelflex.cli import main
from voxelflex.config import load_config
from voxelflex.paths import RunPaths
from voxelflex.steps import preprocess


@pytest.fixture
def prepared(tmp_path: Path, demo_data) -> Path:
    cfg = write_config(tmp_path, demo_data, {"training": {"num_epochs": 3}})
    preprocess.run(load_config(str(cfg)))
    return cfg


def _train(cfg: Path, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "voxelflex", "train", "--config", str(cfg), "-q", *extra]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def _weights(uri: str) -> dict[str, torch.Tensor]:
    return torch.load(uri, weights_only=True)["model_state"]


# where a kill lands: epoch 1 committed, best_model.pt not yet written; epoch 2's
# latest_model.pt whole, not yet in place
KILL_POINTS = ("train.after_latest:1", "atomic.replace:6")


@pytest.mark.slow
def test_kill_9_while_training_then_resume_agrees_everywhere(prepared: Path) -> None:
    """Killed at each write point (each in a run folder of its own), resumed: the history,
    the latest and the best checkpoints agree, and the weights are those of a run that was
    never killed (trained once, for all the kill points). Two epochs: the kills land in
    epoch 1 and epoch 2, the rerun finishes what each left."""
    two = prepared.read_text().replace("num_epochs: 3", "num_epochs: 2")
    assert two != prepared.read_text()
    clean = prepared.parent / "clean.yaml"
    clean.write_text(two.replace("run_name: demo", "run_name: clean"))
    assert main(["train", "--config", str(clean), "-q"]) == 0
    want = RunPaths.from_config(load_config(str(clean)))
    for point in KILL_POINTS:
        name = "killed_" + point.replace(".", "_").replace(":", "_")
        cfg = prepared.parent / f"{name}.yaml"
        cfg.write_text(two.replace("run_name: demo", f"run_name: {name}"))
        paths = RunPaths.from_config(load_config(str(cfg)))
        killed = _train(cfg, env={**os.environ, "PIPEKIT_CRASH_AT": point})
        assert killed.returncode == -9, (point, killed.stderr[-2000:])
        # resumed in this process: only the kill needs a process of its own
        assert main(["train", "--config", str(cfg), "-q", "--auto-resume"]) == 0, point
        history = json.loads(Path(paths.training_history).read_text())
        latest = torch.load(paths.latest_model, weights_only=True)
        best = torch.load(paths.best_model, weights_only=True)
        assert [h["epoch"] for h in history] == [1, 2] and latest["history"] == history
        best_epoch = max(history, key=lambda h: h["val_pearson"])["epoch"]
        assert best["epoch"] + 1 == best_epoch == latest["best_epoch"] + 1
        assert best["best_val_pearson"] == pytest.approx(history[best_epoch - 1]["val_pearson"])
        for mine, theirs in (
            (paths.latest_model, want.latest_model),
            (paths.best_model, want.best_model),
        ):
            a, b = _weights(mine), _weights(theirs)
            assert all(torch.equal(a[k], b[k]) for k in a), point


def test_divergence_is_an_error_and_leaves_no_nan_model(prepared: Path, capsys) -> None:
    paths = RunPaths.from_config(load_config(str(prepared)))
    assert main(["train", "--config", str(prepared), "--set", "training.learning_rate=1e4"]) == 2
    err = capsys.readouterr().err
    assert "training diverged in epoch 1" in err and "lower training.learning_rate" in err
    assert not Path(paths.best_model).exists() and not Path(paths.latest_model).exists()
    assert main(["train", "--config", str(prepared), "--set", "training.learning_rate=.inf"]) == 2
    assert "training.learning_rate" in capsys.readouterr().err


@pytest.mark.slow
def test_a_second_writer_of_a_run_folder_fails_naming_the_first(prepared: Path, capsys) -> None:
    cmd = [sys.executable, "-m", "voxelflex", "train", "--config", str(prepared), "-q"]
    first = subprocess.Popen([*cmd, "--set", "training.num_epochs=50"])
    lock = Path(RunPaths.from_config(load_config(str(prepared))).run_dir) / ".pipekit.lock"
    deadline = time.monotonic() + 60
    while not (lock.exists() and lock.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        assert main(["train", "--config", str(prepared), "-q"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "is in use by voxelflex train" in err
        assert f"pid {first.pid}" in err
    finally:
        first.kill()  # SIGKILL: the kernel drops the lock with the process
        first.wait()
    assert main(["train", "--config", str(prepared), "-q", "--set", "training.num_epochs=1"]) == 0


def test_runs_of_a_sweep_share_one_preprocess(prepared: Path) -> None:
    cfg = load_config(str(prepared))
    other = load_config(str(prepared), ["output.run_name=sweep_b"])
    assert not Path(RunPaths.from_config(other).temp_scaling).exists()
    argv = ["train", "--config", str(prepared), "-q", "--set", "training.num_epochs=1"]
    assert main([*argv, "--set", "output.run_name=sweep_b"]) == 0
    theirs = Path(RunPaths.from_config(other).temp_scaling)
    assert json.loads(theirs.read_text()) == json.loads(
        Path(RunPaths.from_config(cfg).processed_temp_scaling).read_text()
    )


def test_resume_refuses_a_checkpoint_of_other_temperature_scaling(prepared: Path, capsys) -> None:
    paths = RunPaths.from_config(load_config(str(prepared)))
    assert main(["train", "--config", str(prepared), "-q", "--set", "training.num_epochs=1"]) == 0
    Path(paths.processed_temp_scaling).write_text('{"temp_min": 300.0, "temp_max": 450.0}')
    assert main(["train", "--config", str(prepared), "-q", "--resume"]) == 2
    assert "temperature scaling" in capsys.readouterr().err


def test_a_lease_holds_an_object_storage_run_folder(s3, monkeypatch) -> None:
    from pipekit import runlock

    run_dir = "s3://voxelflex/leases/run"
    busy = pytest.raises(runlock.RunFolderBusy, match=f"pid {os.getpid()}")
    with runlock.run_lock(run_dir, "voxelflex train"), busy:  # noqa: SIM117
        with runlock.run_lock(run_dir, "voxelflex train"):
            pass
    with runlock.run_lock(run_dir, "voxelflex train"):  # released on exit
        pass
    # a holder that died stops renewing: once its lease expired, the next writer takes over
    stale = {"what": "voxelflex train", "pid": 1, "host": "gone", "expires": time.time() - 1}
    s3.pipe_file("voxelflex/leases/run/.pipekit.lock", json.dumps(stale).encode())
    with runlock.run_lock(run_dir, "voxelflex train"):
        held = json.loads(s3.cat_file("voxelflex/leases/run/.pipekit.lock"))
        assert held["pid"] == os.getpid() and held["expires"] > time.time()
    # a retry of the same pipeline task (same owner) takes over a lease that has not expired
    monkeypatch.setenv(runlock.OWNER_ENV, "s3://lab/run/train/model")
    alive = {**stale, "expires": time.time() + 600, "owner": "s3://lab/run/train/model"}
    s3.pipe_file("voxelflex/leases/run/.pipekit.lock", json.dumps(alive).encode())
    with runlock.run_lock(run_dir, "voxelflex train"):
        assert json.loads(s3.cat_file("voxelflex/leases/run/.pipekit.lock"))["pid"] == os.getpid()
    alive["owner"] = "s3://lab/other/train/model"  # another task's live lease: busy
    s3.pipe_file("voxelflex/leases/run/.pipekit.lock", json.dumps(alive).encode())
    busy = pytest.raises(runlock.RunFolderBusy, match="pid 1 on gone")
    with busy, runlock.run_lock(run_dir, "voxelflex train"):
        pass


# the task in a process of its own, to be killed: the project root, then run_train_task's args
RETRIED_TRAIN = """
import sys
sys.path.insert(0, sys.argv[1])
from tests.voxelflex.test_train_faults import run_train_task
run_train_task(*sys.argv[2:])
"""


def run_train_task(meta: str, model_dir: str, metrics: str, settings: str, voxels: str) -> None:
    """The train component's function, as the KFP executor calls it."""
    from kfp import dsl

    from voxelflex.components import train

    train.python_func(
        metadata=dsl.Dataset(uri=meta),
        voxel_file=voxels,
        architecture="multipath_rmsf_net",
        num_epochs=2,
        batch_size=32,
        learning_rate=0.003,
        settings=json.loads(settings),
        model=dsl.Model(uri=model_dir),
        metrics=dsl.Metrics(uri=metrics),
    )


@pytest.mark.slow
def test_a_retried_train_task_resumes_from_its_own_checkpoint(
    prepared: Path, demo_data, capsys
) -> None:
    """The train component as KFP runs it, killed after epoch 1 and run again on the same
    output artifact (what a retry does): it continues at epoch 2 instead of starting over.
    (The retry runs in this process: only the kill needs a process of its own.)"""
    from tests.conftest import FAST

    paths = RunPaths.from_config(load_config(str(prepared)))
    script = prepared.parent / "task.py"
    script.write_text(RETRIED_TRAIN)
    model_dir = prepared.parent / "task" / "model"
    settings = {k: v for k, v in FAST.items() if k in ("model", "training", "logging")}
    args = [paths.processed_dir, str(model_dir), str(prepared.parent / "task" / "metrics")]
    args += [json.dumps(settings), str(demo_data.voxel_file)]
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PIPEKIT_CRASH_AT": "train.after_latest:1"}
    killed = subprocess.run([sys.executable, str(script), root, *args], env=env, timeout=300)
    assert killed.returncode == -9
    capsys.readouterr()
    run_train_task(*args)
    err = capsys.readouterr().err
    assert "resuming from" in err and "after epoch 1" in err
    history = json.loads((model_dir / "training_history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
