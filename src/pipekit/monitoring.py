"""Prometheus metrics of a pipeline step (train, predict, evaluate, embed ...).

Metric names carry the system's prefix (`voxelflex_samples_total`). Each step gets its own
registry. With `monitoring.metrics_port` (or PIPEKIT_METRICS_PORT) it is served over HTTP for
Prometheus to scrape while the step runs; with `monitoring.pushgateway_url` (or
PIPEKIT_PUSHGATEWAY_URL) it is also pushed to a Pushgateway after each epoch and at the end,
grouped by run id, because a pipeline pod can finish between two scrapes. Without either,
metrics are kept in memory only.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    push_to_gateway,
    start_http_server,
)

log = logging.getLogger(__name__)

ENV_PORT = "PIPEKIT_METRICS_PORT"
# how cluster pods (pipeline steps, TrainJob nodes) serve metrics and say so to Prometheus:
# prometheus.io annotations for annotation-based scraping, a label for the PodMonitor
METRICS_PORT = "9400"
SCRAPE_ANNOTATIONS = {
    "prometheus.io/scrape": "true",
    "prometheus.io/port": METRICS_PORT,
    "prometheus.io/path": "/metrics",
}
SCRAPE_LABELS = {"pipekit.io/metrics": "true"}
ENV_PUSHGATEWAY = "PIPEKIT_PUSHGATEWAY_URL"
ENV_RUN_ID = "PIPEKIT_RUN_ID"
STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class StepMetrics:
    """The metrics of one step in their own registry. `scores` names the validation scores
    a training step reports after each epoch (`{"val_pearson": "Validation Pearson r"}`)."""

    def __init__(
        self,
        prefix: str,
        step: str,
        run_id: str,
        scores: dict[str, str] | None = None,
        sample: str = "Samples",
        loss: str = "Training loss",
    ) -> None:
        self.prefix = prefix
        self.step = step
        self.run_id = run_id
        self.registry = CollectorRegistry()
        r = self.registry
        self.samples = Counter(f"{prefix}_samples", f"{sample} processed", registry=r)
        self.samples_per_second = Gauge(
            f"{prefix}_samples_per_second", "Throughput of the last epoch or pass", registry=r
        )
        self.data_wait_fraction = Gauge(
            f"{prefix}_data_wait_fraction",
            "Share of step time spent waiting for the next batch (the loader is the bottleneck "
            "when this is high)",
            registry=r,
        )
        self.loss = Gauge(f"{prefix}_loss", loss, ["split"], registry=r)
        self.scores = {
            name: Gauge(f"{prefix}_{name}", text, registry=r)
            for name, text in (scores or {}).items()
        }
        self.epoch = Gauge(f"{prefix}_epoch", "Epochs completed", registry=r)
        self.step_seconds = Histogram(
            f"{prefix}_step_seconds",
            "Wall time of one batch step",
            buckets=STEP_BUCKETS,
            registry=r,
        )
        self.gpu_memory = (
            Gauge(f"{prefix}_gpu_memory_bytes", "GPU memory allocated by the step", registry=r)
            if torch.cuda.is_available()
            else None
        )
        self._gateway: str | None = None

    def batch(self, samples: int, seconds: float, loss: float | None = None) -> None:
        self.samples.inc(samples)
        self.step_seconds.observe(seconds)
        if loss is not None:
            self.loss.labels(split="train").set(loss)
        if self.gpu_memory is not None:
            self.gpu_memory.set(torch.cuda.memory_allocated())

    def pass_done(self, stats: dict[str, Any], epoch: int | None = None) -> None:
        """After an epoch (train) or a whole pass (predict/evaluate)."""
        if "samples_per_s" in stats:
            self.samples_per_second.set(stats["samples_per_s"])
        if "data_wait_fraction" in stats:
            self.data_wait_fraction.set(stats["data_wait_fraction"])
        if "val_loss" in stats:
            self.loss.labels(split="val").set(stats["val_loss"])
        for name, gauge in self.scores.items():
            if stats.get(name) is not None:
                gauge.set(stats[name])
        if epoch is not None:
            self.epoch.set(epoch)
        self.push()

    def push(self) -> None:
        if self._gateway is None:
            return
        try:
            push_to_gateway(
                self._gateway,
                job=f"{self.prefix}_{self.step}",
                grouping_key={"run_id": self.run_id},
                registry=self.registry,
            )
        except OSError as exc:  # monitoring must never stop a training run
            log.warning("could not push metrics to %s: %s", self._gateway, exc)


def _setting(value: Any, env: str) -> Any:
    return value if value not in (None, "") else os.environ.get(env) or None


_warned_bind = False


def _serve(port: int, metrics: StepMetrics, step: str) -> Any:
    """The metrics endpoint on `port` (0: any free port), or None where the port is taken:
    monitoring never stops a step (a second local run, a test beside a demo)."""
    global _warned_bind
    try:
        server, _ = start_http_server(port, registry=metrics.registry)
    except OSError as exc:
        if not _warned_bind:
            log.warning(
                "metrics not served: port %d is taken (%s); the step goes on (set "
                "monitoring.metrics_port or %s to another port, or 0 for any free one)",
                port,
                exc.strerror or exc,
                ENV_PORT,
            )
            _warned_bind = True
        return None
    log.info("metrics for %s at http://0.0.0.0:%d/metrics", step, server.server_port)
    return server


@contextmanager
def step_metrics(metrics: StepMetrics, settings: Any, export: bool = True) -> Iterator[StepMetrics]:
    """Serve and/or push `metrics` as `settings` (a config's `monitoring` section: metrics_port,
    pushgateway_url) and the environment say; `export=False` (ranks other than 0 of a
    data-parallel job) keeps them in-process."""
    port = _setting(settings.metrics_port, ENV_PORT) if export else None
    server = _serve(int(port), metrics, metrics.step) if port is not None else None
    metrics._gateway = _setting(settings.pushgateway_url, ENV_PUSHGATEWAY) if export else None
    try:
        yield metrics
    finally:
        metrics.push()
        if server is not None:
            server.shutdown()
            server.server_close()


def run_id(settings: Any, default: str) -> str:
    """The Pushgateway grouping key: the settings' run id, else PIPEKIT_RUN_ID, else `default`."""
    return str(_setting(settings.run_id, ENV_RUN_ID) or default)
