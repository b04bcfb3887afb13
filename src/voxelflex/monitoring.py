"""VoxelFlex's step metrics: `voxelflex_*` names, validation Pearson r after each epoch."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from pipekit import monitoring
from pipekit.monitoring import StepMetrics
from voxelflex.config import Config


@contextmanager
def step_metrics(cfg: Config, step: str, export: bool = True) -> Iterator[StepMetrics]:
    """Metrics for one step (`train`, `predict`, `evaluate`), served and/or pushed as the
    config and environment say."""
    metrics = StepMetrics(
        "voxelflex",
        step,
        monitoring.run_id(cfg.monitoring, cfg.output.run_name),
        scores={"val_pearson": "Validation Pearson r"},
        sample="Samples (residue at a temperature)",
        loss="Mean squared error",
    )
    with monitoring.step_metrics(metrics, cfg.monitoring, export) as m:
        yield m
