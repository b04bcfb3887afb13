"""preprocess, train (every weighting scheme, PCGrad), evaluate, visualize; bad inputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from pipekit.errors import InputDataError
from rheidae.cli import main
from rheidae.config import load_preprocess, load_training
from rheidae.data.raw import DB_FINAL, DB_GROWTH, DB_INITIAL
from rheidae.steps import evaluate, preprocess, train
from tests.plotcheck import report_problems
from tests.rheidae.conftest import write_reduced


def _pre(tmp_path: Path, raw: Path) -> list[str]:
    return [
        f"input.raw_dir={raw}",
        f"output.dir={tmp_path / 'pdata'}",
        "logging.show_progress=false",
    ]


def test_reduced_time_series_and_a_database_become_one_training_set(tmp_path, one_run) -> None:
    raw = tmp_path / "raw"
    (raw / "run1").mkdir(parents=True)
    ini, fin = one_run
    write_reduced(raw / "run1" / "reduced0D.h5", ini, fin)
    write_reduced(raw / "flat.h5", ini, fin, saturate=False)  # never saturates
    write_reduced(raw / "noisy.h5", ini, fin, noise=0.2, seed=1)  # final state drifts
    broken = fin.copy()
    broken[3, 0, 0] *= 1.05  # electron lepton number not conserved
    write_reduced(raw / "leaky.h5", ini, broken)
    with h5py.File(raw / "db.h5", "w") as f:
        initial, final = np.stack([ini] * 4), np.stack([fin] * 4)
        initial[1, 3, 0, 0] = -1.0  # an unphysical initial state
        final[2, 0, 1, 2] = 2 * final[2, 3, 1, 2]  # an acausal final state, |F| > N
        final[3, 3, 0, 1] *= 1.1  # a muon lepton number that moved
        f.create_dataset(DB_INITIAL, data=initial)
        f.create_dataset(DB_FINAL, data=final)
        f.create_dataset(DB_GROWTH, data=np.array([1e10, 2e10, 3e10, 4e10]))
    (raw / "notes.h5").write_text("not hdf5")
    res = preprocess.run(load_preprocess(None, _pre(tmp_path, raw)))
    with h5py.File(res.combined) as f:
        x, y, src = f["input"][()], f["target"][()], f["source"][()].astype(str)
    assert sorted(src) == ["db.h5#0", "reduced0D.h5"]
    np.testing.assert_allclose(y[list(src).index("reduced0D.h5")].reshape(4, 2, 3), fin, rtol=1e-4)
    np.testing.assert_allclose(x[:, :24].reshape(-1, 4, 2, 3), np.stack([ini, ini]), rtol=1e-5)
    reasons = dict(
        line.split("\t")
        for line in (tmp_path / "pdata" / "failed_runs.txt").read_text().splitlines()
    )
    assert reasons["flat.h5"].startswith("no saturation")
    assert reasons["noisy.h5"].startswith("final state not settled")
    assert reasons["leaky.h5"].startswith("conservation violated")
    assert reasons["db.h5#1"].startswith("unphysical initial moments")
    assert reasons["db.h5#2"].startswith("unphysical final moments")
    assert reasons["db.h5#3"].startswith("conservation violated")
    assert reasons["notes.h5"].startswith("not an HDF5 file")
    again = preprocess.run(load_preprocess(None, _pre(tmp_path, raw)))
    assert again.n_reused == again.n_files and again.failed == res.failed
    # another quadrature changes the numbers: nothing made with the old one is reused
    finer = preprocess.run(load_preprocess(None, [*_pre(tmp_path, raw), "box3d.lebedev_order=25"]))
    assert finer.n_reused == 0 and finer.failed == res.failed


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda f: f.create_dataset(DB_FINAL, data=np.zeros((3, 4, 2))),
            r"F4_final\(1\|ccm\) has shape \(3, 4, 2\)",
        ),
        (lambda f: None, r"database lacks dataset\(s\) \['F4_final\(1\|ccm\)'\]"),
    ],
)
def test_a_malformed_database_is_one_line(tmp_path, capsys, edit, message) -> None:
    import re

    raw = tmp_path / "raw"
    raw.mkdir()
    with h5py.File(raw / "db.h5", "w") as f:
        f.create_dataset(DB_INITIAL, data=np.ones((3, 4, 2, 3)))
        edit(f)
    args = ["preprocess", *[a for s in _pre(tmp_path, raw) for a in ("--set", s)]]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and re.search(message, err), err


def test_a_killed_preprocess_resumes_where_it_stopped(tmp_path, one_run) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    ini, fin = one_run
    for i in range(3):
        write_reduced(raw / f"run{i}.h5", ini, fin)
    cmd = [
        sys.executable,
        "-m",
        "rheidae",
        "preprocess",
        "-q",
        *[a for s in _pre(tmp_path, raw) for a in ("--set", s)],
    ]
    env = {**os.environ, "PIPEKIT_CRASH_AT": "preprocess.run_written:2"}
    assert subprocess.run(cmd, env=env, capture_output=True, timeout=120).returncode == -9
    assert len(list((tmp_path / "pdata").glob("*_preprocessed.h5"))) == 2
    assert not (tmp_path / "pdata" / "preprocessed_all.h5").exists()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "3 points from 3 files (2 reused)" in done.stdout


def _setup(demo, tmp_path: Path, extra: list[str]):
    over = [
        f"training.output_dir={tmp_path / 'results'}",
        f"checkpoint.dir={tmp_path / 'ckpt'}",
        *extra,
    ]
    return load_training(str(demo.model_config), str(demo.train_parms), over)


@pytest.mark.parametrize(
    ("scheme", "pcgrad"),
    [
        ("kendall_gal", False),
        ("dwa", False),
        ("gradnorm", False),
        ("none", False),
        ("kendall_gal", True),
    ],
)
def test_each_weighting_and_pcgrad_beat_box3d_on_held_out_data(
    preprocessed, tmp_path, scheme, pcgrad
):
    setup = _setup(
        preprocessed,
        tmp_path,
        [f"weighting.scheme={scheme}", f"pcgrad.enabled={str(pcgrad).lower()}"],
    )
    res = train.run(setup)
    report = evaluate.run(setup, "test").report
    # on a demo whose truth is not Box3D's (demo.py), with the paired bootstrap interval
    lo, hi = report["improvement_over_box3d_ci95"]
    assert 1.0 < lo < report["improvement_over_box3d"] < hi, report["improvement_over_box3d_ci95"]
    assert report["conservation"]["model_max"] < 1e-2
    history = json.loads((tmp_path / "results" / "training_history.json").read_text())
    assert len(history) == res.epochs_run and set(history[0]) >= {
        "accuracy",
        "number",
        "lepton",
        "causality",
    }


@pytest.mark.parametrize("scheme", ["dwa", "gradnorm"])
def test_a_run_killed_mid_training_resumes_to_the_same_model(preprocessed, tmp_path, scheme):
    """A real process killed with SIGKILL after epoch 3's checkpoint, then `--resume`: the
    weights equal an uninterrupted run's, bit for bit."""
    states = {}
    for name in ("straight", "killed"):
        base = [
            "--config",
            str(preprocessed.model_config),
            "--train-parms",
            str(preprocessed.train_parms),
            "-q",
        ]
        for over in (
            f"training.output_dir={tmp_path / name / 'results'}",
            f"checkpoint.dir={tmp_path / name / 'ckpt'}",
            "training.epochs=6",
            f"weighting.scheme={scheme}",
            "checkpoint.every=2",
        ):
            base += ["--set", over]
        cmd = [sys.executable, "-m", "rheidae", "train", *base]
        if name == "killed":
            env = {**os.environ, "PIPEKIT_CRASH_AT": "train.latest_saved:3"}
            assert subprocess.run(cmd, env=env, capture_output=True, timeout=120).returncode == -9
            cmd.append("--resume")
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        states[name] = torch.load(tmp_path / name / "ckpt" / "latest_model.pt", weights_only=True)
    assert (tmp_path / "killed" / "ckpt" / "checkpoint_epoch_2.pt").is_file()
    assert states["killed"]["train_state"]["epoch"] == 6
    for key, value in states["straight"]["model_state"].items():
        assert torch.equal(value, states["killed"]["model_state"][key]), key


# (number, lepton, causality)
CONSTRAINTS_ON = [
    (True, True, True),
    (False, True, False),
    (True, False, True),
    (False, False, False),
]


def _physics_written_out(pred, target, initial, on) -> dict[str, torch.Tensor]:
    """Each task's loss from its definition on the F4 axes (xyzt, nu/nubar, flavor), without
    the loss module's matrices; number, lepton and causality scales 2, 3 and 0.5."""
    f, f0 = pred.reshape(-1, 4, 2, 3), initial.reshape(-1, 4, 2, 3)
    numbers = [f[:, 3, k].sum(1) - f0[:, 3, k].sum(1) for k in (0, 1)]  # total nu, nubar
    fluxes = [f[:, c, k].sum(1) - f0[:, c, k].sum(1) for c in range(3) for k in (0, 1)]
    lepton = [(f[:, 3, 0, a] - f[:, 3, 1, a]) - (f0[:, 3, 0, a] - f0[:, 3, 1, a]) for a in range(3)]
    excess = [
        torch.relu(torch.linalg.vector_norm(f[:, :3, k, a], dim=1) - f[:, 3, k, a])
        for k in (0, 1)
        for a in range(3)
    ]
    want = {"accuracy": ((pred - target) ** 2).mean()}
    if on[0]:
        want["number"] = torch.stack(numbers + fluxes).pow(2).mean() / 2.0
    if on[1]:
        want["lepton"] = torch.stack(lepton).pow(2).mean() / 3.0
    if on[2]:
        want["causality"] = torch.stack(excess).pow(2).mean() / 0.5
    return want


def _losses(pred, target, initial, on) -> torch.Tensor:
    from rheidae.config.schema import ConstraintsConfig, LossConfig
    from rheidae.losses import task_losses

    scales = LossConfig(number_scale=2.0, lepton_scale=3.0, causality_scale=0.5)
    return task_losses(pred, target, initial, ConstraintsConfig(*on), scales)


@pytest.mark.parametrize("on", CONSTRAINTS_ON)
def test_task_losses_are_the_physics_written_out(on) -> None:
    from rheidae.config.schema import ConstraintsConfig
    from rheidae.losses import task_names

    g = torch.Generator().manual_seed(3)
    pred, target, initial = (torch.randn(37, 24, generator=g, dtype=torch.float64) for _ in "abc")
    names = task_names(ConstraintsConfig(*on))
    got = dict(zip(names, _losses(pred, target, initial, on).tolist(), strict=True))
    want = {k: float(v) for k, v in _physics_written_out(pred, target, initial, on).items()}
    assert got == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("on", CONSTRAINTS_ON)
def test_task_losses_gradient_where_a_flux_is_zero(on) -> None:
    """Where a flux is exactly zero (F/|F| undefined; causality violated by N < 0) the
    gradient is finite and is autograd's through the physics written out above: a norm
    written as sqrt(sum of squares) would make it NaN there."""
    g = torch.Generator().manual_seed(5)
    pred, target, initial = (torch.randn(9, 24, generator=g, dtype=torch.float64) for _ in "abc")
    pred.view(-1, 4, 6)[:3, :3] = 0.0  # no flux in three runs, in every species
    pred.view(-1, 4, 6)[:3, 3] = -1.0  # with N < 0: an excess of 1
    pred.requires_grad_(True)
    weights = torch.rand(4, generator=g, dtype=torch.float64)
    ours = _losses(pred, target, initial, on)
    written = torch.stack(list(_physics_written_out(pred, target, initial, on).values()))
    (got,) = torch.autograd.grad((ours * weights[: len(ours)]).sum(), pred)
    (want,) = torch.autograd.grad((written * weights[: len(ours)]).sum(), pred)
    assert torch.isfinite(got).all()
    assert torch.allclose(got, want, rtol=1e-12, atol=1e-15)


def test_pcgrad_projects_conflicting_gradients_as_defined() -> None:
    """Two linear tasks with conflicting gradients a and b (a.b < 0): PCGrad's update is
    (a - (a.b)/|b|^2 b) + (b - (a.b)/|a|^2 a), what Yu et al. define."""
    from torchjd.aggregation import PCGrad
    from torchjd.autojac import backward, jac_to_grad

    a, b = torch.tensor([1.0, 2.0, -1.0]), torch.tensor([-2.0, 0.5, 1.0])
    assert float(a @ b) < 0
    w = torch.zeros(3, requires_grad=True)
    backward([w @ a, w @ b], inputs=[w])
    jac_to_grad([w], PCGrad())
    want = (a - (a @ b) / (b @ b) * b) + (b - (a @ b) / (a @ a) * a)
    torch.testing.assert_close(w.grad, want)


def test_smoke_and_bad_training_inputs(preprocessed, tmp_path, capsys) -> None:
    cfg = [
        "--config",
        str(preprocessed.model_config),
        "--train-parms",
        str(preprocessed.train_parms),
        "--set",
        f"training.output_dir={tmp_path}",
    ]
    assert main(["train", *cfg, "--smoke"]) == 0
    assert "smoke: one batch forward and backward" in capsys.readouterr().out
    bad = tmp_path / "bad.h5"
    with h5py.File(bad, "w") as f:
        f.create_dataset("input", data=np.ones((10, 47)))
        f.create_dataset("target", data=np.ones((10, 24)))
    assert main(["train", *cfg, "--set", f"data.path={bad}"]) == 2
    assert (
        "input (10, 47) and target (10, 24), expected (N, 48), (N, 24)" in capsys.readouterr().err
    )
    with h5py.File(bad, "w") as f:
        f.create_dataset("input", data=np.full((10, 48), np.nan))
        f.create_dataset("target", data=np.ones((10, 24)))
    assert main(["train", *cfg, "--set", f"data.path={bad}"]) == 2
    assert "non-finite" in capsys.readouterr().err
    with pytest.raises(InputDataError, match="not found: run preprocess first"):
        train.run(load_training(None, None, [f"data.path={tmp_path / 'none.h5'}"]))
    assert main(["train", *cfg, "--set", "weighting.scheme=uniform"]) == 2
    assert "weighting.scheme" in capsys.readouterr().err


def test_visualize_writes_plots_with_their_data(
    preprocessed, tmp_path, figure_checks, monkeypatch
) -> None:
    from rheidae.steps import visualize

    setup = _setup(preprocessed, tmp_path, ["training.epochs=2"])
    train.run(setup)
    # evaluate sizes its torch threads to the pod's CPU quota, as training does
    monkeypatch.setattr("pipekit.cpus.cpu_quota", lambda: 1.0)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        report = evaluate.run(setup).report
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    res = visualize.run(setup)
    assert sorted(res.plots) == [
        "change_parity_flux_test.png",
        "change_parity_number_test.png",
        "error_histogram_test.png",
        "error_parity_test.png",
    ]
    for name in res.plots:
        assert (Path(res.folder) / name).stat().st_size > 1000
        assert (Path(res.folder) / name.replace(".png", "_data.csv")).is_file()
    # the histogram shows the headline's measure: its means are evaluate's figures
    hist = pd.read_csv(Path(res.folder) / "error_histogram_test_data.csv")
    assert hist["model"].mean() == pytest.approx(report["model"]["mean_relative_error"], rel=1e-4)
    assert hist["box3d"].mean() == pytest.approx(report["box3d"]["mean_relative_error"], rel=1e-4)
    # the change plots: Box3D's own changes (exact, from the preprocessed inputs), not the truth's
    change = pd.read_csv(Path(res.folder) / "change_parity_number_test_data.csv")
    assert not np.allclose(change["box3d_change"], change["true_change"], atol=1e-4)
    assert len(figure_checks.seen) == 4 and figure_checks.problems == []
    page = Path(res.report).read_text()
    assert report_problems(page, n_plots=4, caveat=True) == []
    assert f"{report['box3d']['mean_relative_error']:.3g}" in page  # Box3D, the baseline


def test_raw_files_and_the_training_set_in_object_storage(s3, demo, tmp_path) -> None:
    """Raw H5s read from S3, the training set written there, training reading it back."""
    s3.put(str(demo.database), "voxelflex/rheidae/raw/demo_database.h5")
    pre = [
        "input.raw_dir=s3://voxelflex/rheidae/raw",
        "output.dir=s3://voxelflex/rheidae/pdata",
        "logging.show_progress=false",
    ]
    res = preprocess.run(load_preprocess(None, pre))
    assert res.n_points == demo.n_runs and s3.exists("voxelflex/rheidae/pdata/failed_runs.txt")
    assert preprocess.run(load_preprocess(None, pre)).n_reused == 1  # ETag unchanged
    setup = _setup(
        demo,
        tmp_path,
        ["data.path=s3://voxelflex/rheidae/pdata/preprocessed_all.h5", "training.epochs=2"],
    )
    assert train.run(setup).epochs_run == 2


def test_the_labs_make_targets_in_a_project_folder(demo, tmp_path) -> None:
    """A folder in the seed's layout (config/ with the lab's relative paths, .data/) runs the
    seed's targets from where make runs; clean removes what the seed says."""
    import shutil

    project = tmp_path / "proj"
    project.mkdir()
    shutil.copytree(demo.root / "config", project / "config")
    shutil.copytree(demo.root / ".data", project / ".data")
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    assert main(["init", str(project)]) == 0
    assert "../" not in (project / "config" / "model.yaml").read_text()

    def make(*targets: str, **extra: str) -> subprocess.CompletedProcess:
        args = ["make", "-C", str(project), *targets, *(f"{k}={v}" for k, v in extra.items())]
        return subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)

    dry = make("-n", "setup")
    assert "-m venv .venv" in dry.stdout and "pip install -e" in dry.stdout, dry.stdout
    fast = "--set training.epochs=2 --set logging.show_progress=false"
    for target in ("preprocess", "smoke", "train", "train-residual"):
        res = make(
            target, CFG=f"--config config/model.yaml --train-parms config/train_parms.yaml {fast}"
        )
        assert res.returncode == 0, (target, res.stdout[-2000:], res.stderr[-2000:])
    assert (project / ".pdata" / "preprocessed_all.h5").is_file()
    assert (project / "results" / "best_model.pt").is_file()
    assert (project / "checkpoints").is_dir()
    assert not (project / "config" / ".data").exists()  # nothing read against config/
    # the lab's own command, as its seed types it
    script = [sys.executable, "scripts/train.py", "--config", "config/model.yaml"]
    script += ["--train-parms", "config/train_parms.yaml", "--predict-residual", "--smoke"]
    env_src = {**env, "PYTHONPATH": "src"}
    res = subprocess.run(script, cwd=project, env=env_src, capture_output=True, text=True)
    assert res.returncode == 0 and "smoke: one batch forward and backward" in res.stdout, res
    res = subprocess.run(
        [*script, "--predict-residuals"], cwd=project, env=env_src, capture_output=True, text=True
    )
    assert res.returncode == 2 and "--predict-residuals" in res.stderr, res.stderr
    (project / ".venv").mkdir()
    assert make("clean").returncode == 0
    kept = [".data", ".pdata", "Makefile", "config", "scripts"]
    assert sorted(p.name for p in project.iterdir()) == kept


def test_a_new_project_folder_says_where_its_data_go(tmp_path, monkeypatch, capsys) -> None:
    """`rheidae init` then `make preprocess` before any data: one line naming the folder,
    the keys that set it and where data come from."""
    assert main(["init", str(tmp_path)]) == 0
    monkeypatch.chdir(tmp_path)
    assert main(["preprocess", "--config", "config/pre_process.yaml"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"{tmp_path}/.data" in err, err
    assert "input.raw_dir" in err and "rheidae demo-data" in err, err
    argv = ["evaluate", "--config", "config/model.yaml", "--train-parms", "config/train_parms.yaml"]
    assert main(argv) == 2
    assert "results/best_model.pt (run train first)" in capsys.readouterr().err


def test_the_demos_truth_keeps_every_law_and_never_uses_box3d() -> None:
    """The demo's final states conserve what FFI conserves, stay physical, move wherever the
    moments prove a crossing, and come from code that does not load Box3D."""
    from rheidae.demo import initial_moments, pair_conversion, strength
    from rheidae.moments import N_INDEX, flux_factor, violations

    f4 = initial_moments(2000, np.random.default_rng(11))
    final = pair_conversion(f4)
    assert violations(final, f4).max() < 1e-12
    assert (flux_factor(final) < 1).all() and (final[:, N_INDEX] > 0).all()
    moved = np.abs(final - f4).max((1, 2, 3)) / f4[:, N_INDEX].sum((1, 2))
    assert (moved[strength(f4) > 0] > 1e-4).mean() > 0.95
    code = "import sys, rheidae.demo; sys.exit('rheidae.box3d' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0
