"""Prometheus metrics from a real (tiny) training run: scraped live, and pushed."""

from __future__ import annotations

import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import free_port, write_config
from voxelflex.config import load_config
from voxelflex.data.samples import read_master_samples
from voxelflex.paths import RunPaths
from voxelflex.steps import preprocess, train


def _values(text: str) -> dict[str, float]:
    return {
        sample.name
        + ("" if not sample.labels else str(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _cfg(tmp_path: Path, demo_data, monitoring: dict, epochs: int = 3):
    extra = {"training": {"num_epochs": epochs, "batch_size": 16}, "monitoring": monitoring}
    cfg = load_config(str(write_config(tmp_path, demo_data, extra)))
    preprocess.run(cfg)
    n_train = int(
        (read_master_samples(RunPaths.from_config(cfg).master_samples).split == "train").sum()
    )
    return cfg, n_train


def test_metrics_move_on_the_endpoint_during_training(tmp_path, demo_data) -> None:
    port = free_port()
    cfg, n_train = _cfg(tmp_path, demo_data, {"metrics_port": port})
    done = threading.Event()
    result = {}

    def run() -> None:
        result["train"] = train.run(cfg)
        done.set()

    thread = threading.Thread(target=run)
    thread.start()
    scrapes = []
    while not done.is_set():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                scrapes.append(_values(r.read().decode()))
        except OSError:
            pass  # not listening yet, or just closed
        time.sleep(0.05)
    thread.join()
    seen = [s["voxelflex_samples_total"] for s in scrapes if "voxelflex_samples_total" in s]
    assert len(set(seen)) >= 3 and seen == sorted(seen)  # it counted up while we watched
    assert max(seen) <= 3 * n_train
    last = scrapes[-1]
    assert last["voxelflex_epoch"] >= 2
    assert last["voxelflex_step_seconds_count"] > 0
    assert 0 <= last["voxelflex_data_wait_fraction"] <= 1
    assert last["voxelflex_samples_per_second"] > 0
    assert "voxelflex_val_pearson" in last and "voxelflex_loss[('split', 'val')]" in last


class _Receiver(BaseHTTPRequestHandler):
    pushes: ClassVar[list[tuple[str, str, str]]] = []

    def do_PUT(self) -> None:  # the Pushgateway API: PUT /metrics/job/<job>/<label>/<value>
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        self.pushes.append((self.command, self.path, body))
        self.send_response(200)
        self.end_headers()

    do_POST = do_PUT

    def log_message(self, *args) -> None:
        pass


def test_metrics_are_pushed_grouped_by_run_id(tmp_path, demo_data) -> None:
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    _Receiver.pushes = []
    cfg, n_train = _cfg(tmp_path, demo_data, {"pushgateway_url": url, "run_id": "run-42"}, 2)
    train.run(cfg)
    server.shutdown()
    assert {p[1] for p in _Receiver.pushes} == {"/metrics/job/voxelflex_train/run_id/run-42"}
    assert len(_Receiver.pushes) >= 3  # after each epoch and at the end
    final = _values(_Receiver.pushes[-1][2])
    assert final["voxelflex_samples_total"] == 2 * n_train
    assert final["voxelflex_epoch"] == 2


def test_a_taken_metrics_port_warns_once_and_training_goes_on(
    tmp_path, demo_data, capsys, monkeypatch
) -> None:
    """Another process holds the port (a second run, a demo beside the tests)."""
    import socket

    from pipekit import monitoring
    from voxelflex.cli import main

    monkeypatch.setattr(monitoring, "_warned_bind", False)

    with socket.socket() as holder:
        holder.bind(("0.0.0.0", 0))
        holder.listen()
        port = holder.getsockname()[1]
        cfg = write_config(
            tmp_path,
            demo_data,
            {"training": {"num_epochs": 1}, "monitoring": {"metrics_port": port}},
        )
        preprocess.run(load_config(str(cfg)))
        assert main(["train", "--config", str(cfg), "-q"]) == 0
        assert main(["evaluate", "--config", str(cfg), "-q", "--split", "val"]) == 0
    err = capsys.readouterr().err
    assert err.count(f"metrics not served: port {port} is taken") == 1


def test_local_pipeline_runs_serve_metrics_on_a_free_port() -> None:
    from pipekit.monitoring import ENV_PORT, METRICS_PORT
    from pipekit.pipeline.local import _for_this_machine

    spec = {"executors": {"e": {"container": {"env": [{"name": ENV_PORT, "value": METRICS_PORT}]}}}}
    spec["retryPolicy"] = {"maxRetryCount": 2}
    _for_this_machine(spec)
    assert spec == {"executors": {"e": {"container": {"env": [{"name": ENV_PORT, "value": "0"}]}}}}
    # under --runner docker, a GPU step's image is the one this machine has
    spec = {"executors": {"e": {"container": {"image": "x:1-cuda"}}, "f": {"container": {}}}}
    _for_this_machine(spec, {"x:1-cuda": "x:1"})
    assert spec == {"executors": {"e": {"container": {"image": "x:1"}}, "f": {"container": {}}}}
