"""The evaluation gate: per-domain r may not fall by more than the allowed drop."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import metrics_report, write_json
from voxelflex.cli import main
from voxelflex.steps import gate


def test_compare_flags_each_temperature_that_dropped_too_far() -> None:
    reference = metrics_report({"320": 0.80, "450": 0.70, "379": None})
    drops, bad = gate.compare(
        metrics_report({"320": 0.78, "450": 0.60, "379": 0.5}), reference, 0.05
    )
    assert drops == pytest.approx({"320": 0.02, "450": 0.10})
    assert len(bad) == 1 and bad[0].startswith("450 K")
    _, bad = gate.compare(metrics_report({"320": 0.80}), reference, 0.05)
    assert bad == ["450 K: per-domain r undefined now (reference 0.7000)"]


def _r(tmp_path: Path, name: str, r320: float, r450: float) -> str:
    return write_json(tmp_path / f"{name}.json", metrics_report({"320": r320, "450": r450}))


def test_the_baseline_is_pinned_so_small_drops_do_not_add_up(tmp_path: Path, capsys) -> None:
    record = tmp_path / "promotion.json"
    argv = ["gate", "--accepted", str(record), "--max-drop", "0.05"]
    assert main([*argv, "--metrics", _r(tmp_path, "m0", 0.80, 0.70), "--model", "s3://m/0"]) == 0
    assert "baseline set" in capsys.readouterr().out
    # three models, each 0.03 below the last: each passes against the last pass, but the
    # third is 0.09 below the pinned baseline and fails
    assert main([*argv, "--metrics", _r(tmp_path, "m1", 0.77, 0.67), "--model", "s3://m/1"]) == 0
    assert main([*argv, "--metrics", _r(tmp_path, "m2", 0.76, 0.66), "--model", "s3://m/2"]) == 0
    before = record.read_bytes()
    assert main([*argv, "--metrics", _r(tmp_path, "m3", 0.71, 0.61), "--model", "s3://m/3"]) == 2
    err = capsys.readouterr().err
    assert "gate failed against the baseline" in err and "320 K" in err and "450 K" in err
    assert record.read_bytes() == before  # a failing model is never recorded
    kept = json.loads(before)
    assert (
        kept["baseline"]["model_uri"] == "s3://m/0" and kept["accepted"]["model_uri"] == "s3://m/2"
    )
    assert kept["best"]["model_uri"] == "s3://m/0"
    assert gate.accepted_model(str(record)) == "s3://m/2"


def test_against_best_and_judging_without_promoting(tmp_path: Path, capsys) -> None:
    record = tmp_path / "promotion.json"
    argv = ["gate", "--accepted", str(record), "--max-drop", "0.05"]
    assert main([*argv, "--metrics", _r(tmp_path, "m0", 0.70, 0.60), "--model", "s3://m/0"]) == 0
    assert main([*argv, "--metrics", _r(tmp_path, "m1", 0.90, 0.80), "--model", "s3://m/1"]) == 0
    mid = _r(tmp_path, "m2", 0.80, 0.70)  # fine against the baseline, 0.10 below the best
    assert main([*argv, "--metrics", mid, "--against", "best"]) == 2
    assert "against the best" in capsys.readouterr().err
    before = record.read_bytes()
    assert main([*argv, "--metrics", mid, "--no-promote"]) == 0
    assert record.read_bytes() == before
    assert main([*argv, "--metrics", mid, "--model", "s3://m/2", "--rebaseline"]) == 0
    assert json.loads(record.read_text())["baseline"]["model_uri"] == "s3://m/2"


def test_an_older_accepted_metrics_file_is_read_as_the_baseline(tmp_path: Path) -> None:
    old = tmp_path / "accepted.json"
    old.write_text(json.dumps(metrics_report({"320": 0.80, "450": 0.70})))  # a bare report
    with pytest.raises(gate.GateFailed, match="450 K"):
        gate.run(_r(tmp_path, "worse", 0.80, 0.60), str(old), 0.05)
    result = gate.run(_r(tmp_path, "fine", 0.79, 0.69), str(old), 0.05, model_uri="s3://m/9")
    assert result.promoted and result.record["accepted"]["model_uri"] == "s3://m/9"
    assert result.record["baseline"]["model_uri"] is None  # the old file's model is unknown


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
    assert "the baseline in" in err and "non-finite" in err


def test_promotion_registers_the_model_in_the_model_registry(tmp_path: Path, capsys) -> None:
    """Against a stand-in of the Model Registry's REST API on loopback, driven by the
    `model-registry` client itself."""
    from model_registry import ModelRegistry

    from tests.registry_standin import serve

    server, url = serve()
    record = tmp_path / "promotion.json"
    argv = ["gate", "--accepted", str(record), "--registry-url", url]
    assert (
        main(
            [
                *argv,
                "--metrics",
                _r(tmp_path, "a", 0.80, 0.70),
                "--model",
                "s3://m/a",
                "--run-id",
                "run-a",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                *argv,
                "--metrics",
                _r(tmp_path, "b", 0.81, 0.71),
                "--model",
                "s3://m/b",
                "--run-id",
                "run-b",
            ]
        )
        == 0
    )
    # a worse model: the gate fails before anything is registered
    assert (
        main(
            [
                *argv,
                "--metrics",
                _r(tmp_path, "c", 0.60, 0.50),
                "--model",
                "s3://m/c",
                "--run-id",
                "run-c",
            ]
        )
        == 2
    )
    capsys.readouterr()

    host, port = url.rsplit(":", 1)
    client = ModelRegistry(host, int(port), author="test", is_secure=False)
    versions = {v.name for v in client.get_model_versions("voxelflex")}
    assert versions == {"run-a", "run-b"}
    version = client.get_model_version("voxelflex", "run-b")
    assert version.custom_properties["per_domain_r_450K"] == pytest.approx(0.71)
    assert version.custom_properties["run_id"] == "run-b"
    assert client.get_model_artifact("voxelflex", "run-b").uri == "s3://m/b"

    # the registry down: the promotion does not happen, and the record stays as it was
    before = record.read_bytes()
    server.shutdown()
    server.server_close()
    assert (
        main(
            [
                *argv,
                "--metrics",
                _r(tmp_path, "d", 0.82, 0.72),
                "--model",
                "s3://m/d",
                "--run-id",
                "run-d",
            ]
        )
        == 2
    )
    assert "could not register voxelflex version run-d" in capsys.readouterr().err
    assert record.read_bytes() == before
