"""The evaluation gate: per-domain r may not fall by more than the allowed drop."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import metrics_report, write_json
from voxelflex.cli import main
from voxelflex.steps import gate


def test_compare_flags_each_temperature_that_dropped_too_far() -> None:
    accepted = metrics_report({"320": 0.80, "450": 0.70, "379": None})
    drops, bad = gate.compare(
        metrics_report({"320": 0.78, "450": 0.60, "379": 0.5}), accepted, 0.05
    )
    assert drops == pytest.approx({"320": 0.02, "450": 0.10})
    assert len(bad) == 1 and bad[0].startswith("450 K")
    _, bad = gate.compare(metrics_report({"320": 0.80}), accepted, 0.05)
    assert bad == ["450 K: per-domain r undefined now (accepted 0.7000)"]


def test_gate_cli_first_run_pass_fail_and_promotion(tmp_path: Path, capsys) -> None:
    accepted = tmp_path / "accepted.json"
    good = write_json(tmp_path / "good.json", metrics_report({"320": 0.80, "450": 0.70}))
    argv = ["gate", "--accepted", str(accepted), "--max-drop", "0.05"]
    assert main([*argv, "--metrics", good]) == 0
    assert "baseline set" in capsys.readouterr().out
    assert json.loads(accepted.read_text()) == json.loads(Path(good).read_text())

    worse = write_json(tmp_path / "worse.json", metrics_report({"320": 0.79, "450": 0.60}))
    assert main([*argv, "--metrics", worse]) == 2
    err = capsys.readouterr().err
    assert "gate failed" in err and "450 K" in err and "320 K" not in err
    assert (
        json.loads(accepted.read_text())["model"]["per_temperature"]["450"][
            "mean_per_domain_pearson"
        ]
        == 0.70
    )  # a failing model never becomes the accepted one

    fine = write_json(tmp_path / "fine.json", metrics_report({"320": 0.79, "450": 0.69}))
    assert main([*argv, "--metrics", fine, "--no-promote"]) == 0
    assert "largest per-domain r drop 0.0100" in capsys.readouterr().out
    assert json.loads(accepted.read_text()) == json.loads(Path(good).read_text())
    assert main([*argv, "--metrics", fine]) == 0
    assert json.loads(accepted.read_text()) == json.loads(Path(fine).read_text())


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_metrics_never_pass_on_either_side(tmp_path: Path, capsys, bad) -> None:
    accepted = tmp_path / "accepted.json"
    argv = ["gate", "--accepted", str(accepted), "--max-drop", "0.05"]
    diverged = metrics_report({"320": bad, "450": 0.70})
    diverged["model"]["pooled"]["pearson"] = bad
    nan_run = write_json(tmp_path / "nan.json", diverged)
    assert main([*argv, "--metrics", nan_run]) == 2  # not even as the first baseline
    assert "non-finite" in capsys.readouterr().err and not accepted.exists()
    # an accepted file that holds NaN (from before this check) is no baseline either
    accepted.write_text(Path(nan_run).read_text())
    good = write_json(tmp_path / "good.json", metrics_report({"320": 0.80, "450": 0.70}))
    assert main([*argv, "--metrics", good]) == 2
    err = capsys.readouterr().err
    assert "accepted metrics" in err and "non-finite" in err
