"""`pipeline submit` / `schedule` against a small KFP v2beta1 API server on loopback that
implements the endpoints kfp.Client uses here and records every request."""

from __future__ import annotations

import json
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlparse

import pytest
import yaml

from pipekit.pipeline.submit import kfp_cron, parse_params
from tests.conftest import metrics_report, write_json
from tests.json_http import JSONHandler
from voxelflex.cli import main

API = "/apis/v2beta1"


class FakeKFP(JSONHandler):
    requests: ClassVar[list[dict[str, Any]]] = []
    experiments: ClassVar[list[dict[str, Any]]] = []
    final_state: ClassVar[str] = "SUCCEEDED"
    refuse: ClassVar[int] = 0  # 401/403: the server turns every request away

    def _record(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        url = urlparse(self.path)
        entry = {
            "method": self.command,
            "path": url.path,
            "query": parse_qs(url.query),
            "body": body,
            "auth": self.headers.get("Authorization"),
            "cookie": self.headers.get("Cookie"),
        }
        self.requests.append(entry)
        return entry

    def do_GET(self) -> None:
        req = self._record()
        if self.refuse:
            return self._reply({"error": "unauthorized", "code": 16}, self.refuse)
        if req["path"] == f"{API}/healthz":
            return self._reply({"multi_user": False})
        if req["path"] == f"{API}/experiments":
            return self._reply(
                {"experiments": self.experiments, "total_size": len(self.experiments)}
            )
        if req["path"].startswith(f"{API}/runs/"):
            run_id = req["path"].rsplit("/", 1)[1]
            tasks = [
                {"display_name": "train", "state": "SUCCEEDED"},
                {"display_name": "evaluation-gate", "state": self.final_state},
            ]
            return self._reply(
                {
                    "run_id": run_id,
                    "state": self.final_state,
                    "run_details": {"task_details": tasks},
                }
            )
        self._reply({"error": "not found"}, 404)

    def do_POST(self) -> None:
        req = self._record()
        if self.refuse:
            return self._reply({"error": "unauthorized", "code": 16}, self.refuse)
        body = req["body"] or {}
        if req["path"] == f"{API}/experiments":
            exp = {"experiment_id": f"exp-{len(self.experiments) + 1}", **body}
            self.experiments.append(exp)
            return self._reply(exp)
        if req["path"] == f"{API}/runs":
            return self._reply({"run_id": "run-1", "state": "PENDING", **body})
        if req["path"] == f"{API}/recurringruns":
            return self._reply({"recurring_run_id": "rr-1", **body})
        self._reply({"error": "not found"}, 404)


@pytest.fixture
def kfp_server(monkeypatch, tmp_path):
    # this checkout's code, recorded as the released image's (a release, as docs/runbook.md says)
    from pipekit.pipeline import submit
    from pipekit.pipeline.images import IMAGE_VERSION
    from pipekit.release import code_digest

    released = tmp_path / "released.json"
    released.write_text(json.dumps({IMAGE_VERSION: code_digest()}))
    monkeypatch.setattr(submit, "RELEASED_FILE", released)
    FakeKFP.requests, FakeKFP.experiments, FakeKFP.final_state = [], [], "SUCCEEDED"
    FakeKFP.refuse = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeKFP)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("KFP_TOKEN", "secret-token-123")
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


EVAL_PARAMS = {
    "model_uri": "s3://lab/runs/1/model",
    "voxel_file": "s3://lab/v.packed",
    "aggregated_rmsf_file": "s3://lab/rmsf.csv",
    "train_split_file": "s3://lab/train.txt",
    "val_split_file": "s3://lab/val.txt",
    "test_split_file": "s3://lab/test.txt",
    "accepted_metrics_uri": "s3://lab/accepted.json",
}


def _flags(params: dict[str, Any]) -> list[str]:
    return [a for k, v in params.items() for a in ("--param", f"{k}={v}")]


def _posts(path: str) -> list[dict[str, Any]]:
    return [r for r in FakeKFP.requests if r["method"] == "POST" and r["path"] == f"{API}/{path}"]


def test_submit_creates_a_run_with_the_pipeline_and_parameters(kfp_server, capsys) -> None:
    argv = ["pipeline", "submit", "--host", kfp_server, "--experiment", "ci-retrain"]
    params = [
        "voxel_file=s3://lab/voxels.hdf5",
        "aggregated_rmsf_file=s3://lab/rmsf.csv",
        "train_split_file=s3://lab/train.txt",
        "val_split_file=s3://lab/val.txt",
        "test_split_file=s3://lab/test.txt",
        "num_epochs=7",
        "predict_temperatures=[300, 335.5]",
        "mirror_to_zarr=true",
    ]
    assert main([*argv, *(a for p in params for a in ("--param", p)), "--wait"]) == 0
    out = capsys.readouterr()
    assert f"run run-1: {kfp_server}/#/runs/details/run-1" in out.out
    assert "final state: SUCCEEDED" in out.out and "evaluation-gate: SUCCEEDED" in out.out
    assert "secret-token-123" not in out.out + out.err  # the token is never printed

    (exp,) = _posts("experiments")
    assert exp["body"]["display_name"] == "ci-retrain"
    (run,) = _posts("runs")
    body = run["body"]
    assert body["experiment_id"] == "exp-1"
    spec = body["pipeline_spec"]["pipeline_spec"]
    assert (
        spec["pipelineInfo"]["name"] == "voxelflex" and "preprocess" in spec["root"]["dag"]["tasks"]
    )
    # the Kubernetes settings travel with it: the GPU node selector, secrets
    executors = body["pipeline_spec"]["platform_spec"]["platforms"]["kubernetes"]
    assert "exec-train" in executors["deploymentSpec"]["executors"]
    assert body["runtime_config"]["parameters"] == {
        "voxel_file": "s3://lab/voxels.hdf5",
        "aggregated_rmsf_file": "s3://lab/rmsf.csv",
        "train_split_file": "s3://lab/train.txt",
        "val_split_file": "s3://lab/val.txt",
        "test_split_file": "s3://lab/test.txt",
        "num_epochs": 7,
        "predict_temperatures": [300, 335.5],
        "mirror_to_zarr": True,
    }
    # the token travels as a bearer header on every call
    assert {r["auth"] for r in FakeKFP.requests} == {"Bearer secret-token-123"}
    assert any(r["path"] == f"{API}/runs/run-1" for r in FakeKFP.requests)


def test_wait_prints_the_metrics_the_run_wrote(kfp_server, tmp_path, capsys) -> None:
    metrics = write_json(tmp_path / "m.json", metrics_report({"320": 0.81, "450": 0.72}))
    params = {
        "voxel_file": "v",
        "aggregated_rmsf_file": "r",
        "train_split_file": "a",
        "val_split_file": "b",
        "test_split_file": "c",
    }
    argv = ["pipeline", "submit", "--host", kfp_server, *_flags(params), "--wait"]
    argv += ["--metrics-uri", metrics]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "per_domain_pearson_320K = 0.81" in out and "pearson = 0.9" in out


def test_a_failed_run_fails_the_command(kfp_server, capsys) -> None:
    FakeKFP.final_state = "FAILED"
    argv = [
        "pipeline",
        "submit",
        "--host",
        kfp_server,
        "--pipeline",
        "voxelflex_evaluation_pipeline",
    ]
    assert main([*argv, *_flags(EVAL_PARAMS), "--wait"]) == 2
    err = capsys.readouterr().err
    assert "ended FAILED" in err and "evaluation-gate" in err


def test_unknown_or_missing_parameters_are_refused_before_anything_is_sent(kfp_server, capsys):
    argv = ["pipeline", "submit", "--host", kfp_server, "--param", "num_epoch=3"]
    assert main(argv) == 2
    assert "num_epoch" in capsys.readouterr().err
    assert main(["pipeline", "submit", "--host", kfp_server]) == 2
    assert "voxel_file" in capsys.readouterr().err
    assert not _posts("runs")


def test_schedule_creates_a_recurring_evaluation(kfp_server, capsys) -> None:
    flags = _flags({**EVAL_PARAMS, "max_drop": 0.02})
    argv = ["pipeline", "schedule", "--host", kfp_server, "--cron", "0 3 * * *"]
    assert main([*argv, *flags]) == 0
    assert "recurring run rr-1" in capsys.readouterr().out
    (job,) = _posts("recurringruns")
    body = job["body"]
    assert body["display_name"] == "voxelflex-scheduled-evaluation"
    assert body["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * *"
    assert body["max_concurrency"] == "1" or body["max_concurrency"] == 1
    assert body["no_catchup"] is True
    assert body["pipeline_spec"]["pipeline_spec"]["pipelineInfo"]["name"] == "voxelflex-evaluation"
    assert body["runtime_config"]["parameters"]["max_drop"] == 0.02


def test_cron_and_params() -> None:
    assert kfp_cron("*/30 * * * *") == "0 */30 * * * *"
    assert kfp_cron("0 0 3 * * *") == "0 0 3 * * *"
    with pytest.raises(Exception, match="5 fields"):
        kfp_cron("daily")
    assert parse_params(["a=1", "b=[1, 2]", "c=s3://x", "d="]) == {
        "a": 1,
        "b": [1, 2],
        "c": "s3://x",
        "d": "",
    }


def test_ci_workflow_runs_only_commands_that_exist() -> None:
    """The retraining workflow parses, references secrets by name only, and every
    `voxelflex` command line in it parses with this CLI."""
    from voxelflex.cli import build_parser

    root = Path(__file__).resolve().parents[2]
    flow = yaml.safe_load((root / ".github" / "workflows" / "retrain.yml").read_text())
    triggers = flow[True] if True in flow else flow["on"]  # YAML 1.1 reads `on` as True
    assert "workflow_dispatch" in triggers and "push" in triggers
    steps = [s for job in flow["jobs"].values() for s in job["steps"]]
    runs = "\n".join(s.get("run", "") for s in steps)
    commands = [
        line.strip().rstrip("\\").strip()
        for line in runs.replace("\\\n", " ").splitlines()
        if line.strip().startswith("voxelflex ")
    ]
    assert any(c.startswith("voxelflex pipeline submit") for c in commands)
    assert any("--wait" in c for c in commands)
    parser = build_parser()
    for command in commands:
        # shell expansions become placeholder values; the words must parse as a command
        words = ["X" if "$" in w else w.strip('"') for w in command.split()[1:]]
        args, _ = parser.parse_known_args(words)  # SystemExit on an unknown command or flag
        assert args.func.__name__.startswith("cmd_")
    text = (root / ".github" / "workflows" / "retrain.yml").read_text()
    assert "secrets.KFP_TOKEN" in text and "KFP_TOKEN:" in text
    assert "secret-token" not in text


@pytest.mark.parametrize("code", [401, 403])
@pytest.mark.parametrize("command", ["submit", "schedule"])
def test_a_server_that_refuses_says_how_to_authenticate(kfp_server, capsys, code, command) -> None:
    FakeKFP.refuse = code
    argv = ["pipeline", command, "--host", kfp_server, *_flags(EVAL_PARAMS)]
    if command == "submit":
        argv += ["--pipeline", "voxelflex_evaluation_pipeline"]
    else:
        argv += ["--cron", "0 3 * * *"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert f"unauthorized (HTTP {code})" in err and "set KFP_TOKEN or KFP_COOKIES" in err


def test_submit_refuses_code_no_released_image_holds(kfp_server, capsys, tmp_path, monkeypatch):
    from pipekit.pipeline import submit
    from pipekit.release import DIGEST_ENV, code_digest

    monkeypatch.setattr(submit, "RELEASED_FILE", tmp_path / "none.json")  # nothing released
    argv = ["pipeline", "submit", "--host", kfp_server, *_flags(EVAL_PARAMS)]
    argv += ["--pipeline", "voxelflex_evaluation_pipeline"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "is not what image" in err and "not released" in err and not _posts("runs")
    # an image built from this checkout: allowed, and every step learns the code it expects
    assert main([*argv, "--unreleased"]) == 0
    spec = _posts("runs")[0]["body"]["pipeline_spec"]["pipeline_spec"]
    containers = [
        x["container"] for x in spec["deploymentSpec"]["executors"].values() if "container" in x
    ]
    for container in containers:  # every step
        stamped = [e["value"] for e in container.get("env", []) if e["name"] == DIGEST_ENV]
        assert stamped == [code_digest()]
