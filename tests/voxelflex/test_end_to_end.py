"""The five steps in order from the CLI on demo data, checking every contract output."""

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from tests.conftest import write_config
from tests.plotcheck import report_problems
from voxelflex.cli import main
from voxelflex.config import load_config
from voxelflex.paths import RunPaths
from voxelflex.steps.demo_data import make_demo_dataset

PRED_COLS = ["domain_id", "resid", "resname", "temperature", "predicted_rmsf"]


@pytest.mark.slow
def test_five_steps_on_demo_data(tmp_path: Path, capsys, figure_checks) -> None:
    data = make_demo_dataset(
        tmp_path / "data", n_domains=8, seed=11, min_residues=40, max_residues=60
    )
    cfg_path = str(
        write_config(
            tmp_path / "run",
            data,
            {
                "training": {
                    "num_epochs": 3,
                    "learning_rate": 0.003,
                    "batch_size": 32,
                    "num_workers": 1,
                    "chunk_size": 2,
                    "shuffle_buffer_size": 64,
                    "checkpoint_every": 0,
                },
            },
        )
    )
    base = ["--config", cfg_path, "-q"]
    assert main(["preprocess", *base]) == 0
    assert main(["evaluate", *base]) == 2  # before train: says what makes the model
    assert "best_model.pt (run train first, or name one with --model)" in capsys.readouterr().err
    assert main(["train", *base]) == 0
    assert (
        main(["predict", *base, "--split", "test", "--temperature", "335", "--temperature", "500"])
        == 0
    )
    test_domain = (data.root / "test_domains.txt").read_text().split()[0]
    assert main(["predict", *base, "--domains", test_domain, "--temperature", "300"]) == 0
    assert main(["predict", *base, "--domains", "nosuchA00", "--temperature", "300"]) == 2
    assert "unknown domain(s) nosuchA00" in capsys.readouterr().err
    assert main(["evaluate", *base, "--permutation-importance"]) == 0
    assert main(["visualize", *base]) == 0

    paths = RunPaths.from_config(load_config(cfg_path))
    run = Path(paths.run_dir)
    master = pd.read_parquet(paths.master_samples)
    assert {"train", "val", "test"} == set(master.split)
    for name in ("best_model.pt", "latest_model.pt", "temp_scaling_params.json"):
        assert (run / "models" / name).is_file()
    torch.load(run / "models" / "best_model.pt", weights_only=True)
    assert (run / "failed_preprocess_domains.txt").is_file()
    assert json.loads((run / "training_history.json").read_text())[-1]["epoch"] == 3
    assert (run / "logs" / "voxelflex.log").stat().st_size > 0

    # predictions at an unseen temperature, and at one outside the training range
    p = pd.read_csv(run / "metrics" / "predictions_test_335K-500K.csv")
    assert list(p.columns) == [*PRED_COLS, "target_rmsf"]
    assert set(p.temperature) == {335.0, 500.0}
    assert p.predicted_rmsf.notna().all() and (p.predicted_rmsf > 0).all()
    assert p.target_rmsf.isna().all()  # no CSV row at 335 K or 500 K
    mean_by_t = p.groupby("temperature").predicted_rmsf.mean()
    assert mean_by_t[500.0] > mean_by_t[335.0]  # learned: hotter is more flexible
    d = pd.read_csv(run / "metrics" / "predictions_domains_300K.csv", dtype={"domain_id": str})
    assert set(d.domain_id) == {test_domain}

    report = json.loads((run / "metrics" / "evaluation_metrics_test.json").read_text())
    for block in ("model", "baseline_temperature_mean", "baseline_resname_temperature_mean"):
        assert set(report[block]["per_temperature"]) == {"320", "348", "379", "413", "450"}
        for m in report[block]["per_temperature"].values():
            assert {"pearson", "spearman", "rmse", "mae", "r2", "mean_per_domain_pearson"} <= set(m)
    assert {"resname", "dssp", "relative_accessibility"} <= set(report["strata"])
    assert set(report["permutation_importance"]) == {"temperature", "C", "N", "O", "CA", "CB"}
    # the trained model beats the per-temperature-mean baseline on the held-out split
    assert report["model"]["pooled"]["rmse"] < report["baseline_temperature_mean"]["pooled"]["rmse"]
    summary = (run / "metrics" / "evaluation_summary_test.md").read_text()
    assert "per-domain r" in summary and "| 450 |" in summary
    evaluated = pd.read_csv(run / "metrics" / "predictions_test.csv")
    assert list(evaluated.columns) == [*PRED_COLS, "target_rmsf"]
    assert evaluated.target_rmsf.notna().all()

    vis = run / "visualizations"
    names = [
        "training_curves",
        "pred_vs_true_density",
        "error_distribution",
        "per_temperature_r",
        "temperature_response",
    ]
    for name in names:
        assert (vis / f"{name}.png").stat().st_size > 5000
        assert not pd.read_csv(vis / f"{name}_data.csv").empty
    n_profiles = min(2, evaluated.domain_id.nunique())  # first two test domains by default
    assert len(list(vis.glob("rmsf_profile_*.png"))) == n_profiles
    gallery = (vis / "index.html").read_text()
    # every plot inlined, so the page renders after being copied into a KFP HTML artifact;
    # the demo's voxels are synthetic: the caveat shows
    n_plots = len(list(vis.glob("*.png")))
    assert report_problems(gallery, n_plots=n_plots, caveat=True) == []
    assert "training mean per residue type at T" in gallery  # a baseline, in the same measures
    # every figure readable: labels, legends off the data, whole epochs, no white lines
    assert len(figure_checks.seen) == n_plots and figure_checks.problems == []
