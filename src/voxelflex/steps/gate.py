"""Evaluation gate: fail when a model's per-domain r drops against the last accepted metrics.

The scheduled evaluation and CI retraining compare `evaluation_metrics_<split>.json` with
the accepted one (a URI). At every temperature of the accepted file, the mean per-domain
Pearson r may fall by at most `max_drop`; a temperature that is missing or undefined now
counts as a failure. A passing result becomes the accepted one (unless told not to), so the
next run compares with the newest good model. The first run (nothing accepted yet) passes.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from typing import Any

from voxelflex.data.uri import open_uri, require_file, uri_exists
from voxelflex.errors import VoxelFlexError
from voxelflex.paths import RunPaths

log = logging.getLogger(__name__)

KEY = "mean_per_domain_pearson"


class GateFailed(VoxelFlexError):
    """The model got worse than the accepted one by more than the allowed drop."""


@dataclass(frozen=True)
class GateResult:
    passed: bool
    first_run: bool
    drops: dict[str, float] = field(default_factory=dict)  # temperature -> accepted - now
    violations: list[str] = field(default_factory=list)
    promoted: bool = False


def _per_temperature(report: dict[str, Any]) -> dict[str, float | None]:
    return {t: m.get(KEY) for t, m in report["model"]["per_temperature"].items()}


def non_finite(report: dict[str, Any]) -> list[str]:
    """Headline numbers of an evaluation report that are NaN or infinite (a per-temperature r
    may be undefined, null, where too few residues; the pooled numbers may not): a model with
    any is never accepted, and an accepted file with any is never a baseline."""
    per_t = _per_temperature(report).items()
    bad = [f"{t} K per-domain r" for t, v in per_t if v is not None and not _finite(v)]
    pooled = report["model"].get("pooled", {})
    bad += [f"pooled {k}" for k in ("pearson", "rmse") if not _finite(pooled.get(k))]
    return bad


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def compare(
    current: dict[str, Any], accepted: dict[str, Any], max_drop: float
) -> tuple[dict[str, float], list[str]]:
    now, before = _per_temperature(current), _per_temperature(accepted)
    drops: dict[str, float] = {}
    violations: list[str] = []
    for temp, ref in before.items():
        if ref is None or not math.isfinite(ref):
            continue  # nothing to hold the model to at this temperature
        value = now.get(temp)
        if value is None or not math.isfinite(value):
            violations.append(f"{temp} K: per-domain r undefined now (accepted {ref:.4f})")
            continue
        drops[temp] = ref - value
        if ref - value > max_drop:
            violations.append(
                f"{temp} K: per-domain r {value:.4f} vs accepted {ref:.4f} "
                f"(drop {ref - value:.4f} > {max_drop})"
            )
    return drops, violations


def headline_metrics(result: GateResult) -> dict[str, float]:
    return {f"per_domain_r_drop_{t}K": d for t, d in result.drops.items()}


def metrics_file(run_dir: str, split: str) -> str:
    """Where evaluate wrote its metrics for `split` under a run folder."""
    return RunPaths(run_dir=run_dir, processed_dir="").evaluation_metrics(split)


def _read(uri: str) -> dict[str, Any]:
    with open_uri(uri, "r") as fh:
        return json.load(fh)


def run(metrics: str, accepted: str, max_drop: float = 0.05, promote: bool = True) -> GateResult:
    if max_drop < 0:
        raise VoxelFlexError(f"--max-drop must be >= 0, not {max_drop}")
    current = _read(require_file(metrics, "--metrics"))
    bad = non_finite(current)
    if bad:
        raise GateFailed(f"evaluation gate failed: {metrics} has non-finite {', '.join(bad)}")
    if uri_exists(accepted) and non_finite(_read(accepted)):
        bad = non_finite(_read(accepted))
        raise GateFailed(
            f"evaluation gate failed: the accepted metrics {accepted} have non-finite "
            f"{', '.join(bad)}; replace them with a good model's metrics"
        )
    if not uri_exists(accepted):
        log.info("gate: no accepted metrics at %s yet: this run sets the baseline", accepted)
        result = GateResult(True, True)
    else:
        drops, violations = compare(current, _read(accepted), max_drop)
        if violations:
            raise GateFailed(f"evaluation gate failed against {accepted}: " + "; ".join(violations))
        result = GateResult(True, False, drops, [])
        log.info("gate passed: largest per-domain r drop %.4f", max(drops.values(), default=0))
    if promote:
        with open_uri(accepted, "w") as fh:
            json.dump(current, fh, indent=2)
        log.info("gate: %s is now the accepted metrics (%s)", metrics, accepted)
    return GateResult(result.passed, result.first_run, result.drops, [], promote)
