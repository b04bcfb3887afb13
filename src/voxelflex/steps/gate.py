"""VoxelFlex's evaluation gate: `pipekit.gate` judging per-domain Pearson r per temperature.

At every temperature of the reference (the baseline, or `against="best"`), the mean
per-domain Pearson r may fall by at most `max_drop`; the best model is the one with the
highest mean over temperatures. The record's format is `voxelflex-promotion-v1`; promoted
models are versions of `voxelflex` in the Kubeflow Model Registry.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from pipekit import gate
from pipekit.gate import GateFailed, GateResult, finite
from voxelflex.paths import RunPaths

KEY = "mean_per_domain_pearson"
FORMAT = "voxelflex-promotion-v1"
# the registered model promotions become versions of (Kubeflow Model Registry)
MODEL_NAME = "voxelflex"
AUTHOR = "voxelflex evaluation gate"

__all__ = ["GateFailed", "GateResult", "accepted_model", "compare", "read_record", "run"]


def version_properties(entry: dict[str, Any]) -> dict[str, Any]:
    """What a version records besides its URI: headline metrics (floats) and provenance."""
    model = entry["metrics"]["model"]
    props: dict[str, Any] = {
        f"pooled_{k}": float(v) for k, v in model.get("pooled", {}).items() if v is not None
    }
    for temp, m in model.get("per_temperature", {}).items():
        if m.get("mean_per_domain_pearson") is not None:
            props[f"per_domain_r_{temp}K"] = float(m["mean_per_domain_pearson"])
    props["run_id"] = str(entry.get("run_id") or "")
    props["promoted_at"] = str(entry["promoted_at"])
    return props


def _per_temperature(report: dict[str, Any]) -> dict[str, float | None]:
    return {t: m.get(KEY) for t, m in report["model"]["per_temperature"].items()}


def non_finite(report: dict[str, Any]) -> list[str]:
    """Headline numbers of an evaluation report that are NaN or infinite (a per-temperature r
    may be undefined, null, where too few residues; the pooled numbers may not)."""
    per_t = _per_temperature(report).items()
    bad = [f"{t} K per-domain r" for t, v in per_t if v is not None and not finite(v)]
    pooled = report["model"].get("pooled", {})
    bad += [f"pooled {k}" for k in ("pearson", "rmse") if not finite(pooled.get(k))]
    return bad


JUDGE = gate.Judge(
    scores=_per_temperature,
    non_finite=non_finite,
    describe=lambda temp: f"{temp} K: per-domain r",
    label="per-domain r",
    summary_key="mean_per_domain_r",
    format=FORMAT,
    model_name=MODEL_NAME,
    author=AUTHOR,
    properties=version_properties,
)


def mean_r(report: dict[str, Any]) -> float:
    return gate.mean_score(JUDGE, report)


def compare(
    current: dict[str, Any], reference: dict[str, Any], max_drop: float
) -> tuple[dict[str, float], list[str]]:
    return gate.compare(JUDGE, current, reference, max_drop)


def headline_metrics(result: GateResult) -> dict[str, float]:
    return {f"per_domain_r_drop_{t}K": d for t, d in result.drops.items()}


def metrics_file(run_dir: str, split: str) -> str:
    """Where evaluate wrote its metrics for `split` under a run folder."""
    return RunPaths(run_dir=run_dir, processed_dir="").evaluation_metrics(split)


def read_record(uri: str) -> dict[str, Any] | None:
    return gate.read_record(uri, FORMAT)


def accepted_model(uri: str) -> str:
    return gate.accepted_model(uri, FORMAT)


# gate.run with VoxelFlex's judge: run(metrics, accepted, max_drop, promote, model_uri, ...)
run = partial(gate.run, JUDGE)
