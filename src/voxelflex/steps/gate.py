"""Evaluation gate and promotion: fail on a drop against a pinned baseline; promote the model.

The accepted file (`accepted_metrics_uri`, a URI) is a promotion record, written in one
piece (one upload, or temp file + rename), so promotion is one atomic act:

    {"format": "voxelflex-promotion-v1",
     "accepted": ENTRY,   the model now accepted: what the scheduled evaluation evaluates
     "baseline": ENTRY,   pinned: what every later model is compared with (the first accepted
                          model, until `--rebaseline`)
     "best": ENTRY,       the best accepted so far (mean per-domain r over temperatures)
     "history": [{run_id, model_uri, promoted_at, mean_per_domain_r}, ...]}
    ENTRY = {"model_uri", "run_id", "promoted_at", "metrics": <evaluation_metrics report>}

At every temperature of the reference (the baseline, or `against="best"`), the mean
per-domain Pearson r may fall by at most `max_drop`; a temperature undefined now counts as a
failure. Comparing with a pinned reference, never with the last pass, keeps small drops from
adding up. Non-finite metrics never pass and are never a reference. The first run (no record
yet) passes and pins its model as the baseline. An older record that is a bare metrics report
is read as a baseline whose model is unknown.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

from pipekit.atomic import replacing_uri
from pipekit.errors import PipelineError
from pipekit.uri import open_uri, require_file, uri_exists
from voxelflex.paths import RunPaths

log = logging.getLogger(__name__)

KEY = "mean_per_domain_pearson"
FORMAT = "voxelflex-promotion-v1"
REFERENCES = ("baseline", "best")


class GateFailed(PipelineError):
    """The model got worse than the reference by more than the allowed drop."""


@dataclass(frozen=True)
class GateResult:
    passed: bool
    first_run: bool
    drops: dict[str, float] = field(default_factory=dict)  # temperature -> reference - now
    violations: list[str] = field(default_factory=list)
    promoted: bool = False
    record: dict[str, Any] = field(default_factory=dict)  # the promotion record after the gate


# the registered model promotions become versions of (Kubeflow Model Registry)
MODEL_NAME = "voxelflex"
AUTHOR = "voxelflex evaluation gate"


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


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def non_finite(report: dict[str, Any]) -> list[str]:
    """Headline numbers of an evaluation report that are NaN or infinite (a per-temperature r
    may be undefined, null, where too few residues; the pooled numbers may not)."""
    per_t = _per_temperature(report).items()
    bad = [f"{t} K per-domain r" for t, v in per_t if v is not None and not _finite(v)]
    pooled = report["model"].get("pooled", {})
    bad += [f"pooled {k}" for k in ("pearson", "rmse") if not _finite(pooled.get(k))]
    return bad


def mean_r(report: dict[str, Any]) -> float:
    values = [v for v in _per_temperature(report).values() if _finite(v)]
    return sum(values) / len(values) if values else -math.inf


def compare(
    current: dict[str, Any], reference: dict[str, Any], max_drop: float
) -> tuple[dict[str, float], list[str]]:
    now, before = _per_temperature(current), _per_temperature(reference)
    drops: dict[str, float] = {}
    violations: list[str] = []
    for temp, ref in before.items():
        if ref is None or not math.isfinite(ref):
            continue  # nothing to hold the model to at this temperature
        value = now.get(temp)
        if value is None or not math.isfinite(value):
            violations.append(f"{temp} K: per-domain r undefined now (reference {ref:.4f})")
            continue
        drops[temp] = ref - value
        if ref - value > max_drop:
            violations.append(
                f"{temp} K: per-domain r {value:.4f} vs reference {ref:.4f} "
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


def read_record(uri: str) -> dict[str, Any] | None:
    """The promotion record at `uri` (an older bare metrics report becomes one), or None."""
    if not uri_exists(uri):
        return None
    data = _read(uri)
    if data.get("format") == FORMAT:
        return data
    entry = {"model_uri": None, "run_id": None, "promoted_at": None, "metrics": data}
    return {"format": FORMAT, "accepted": entry, "baseline": entry, "best": entry, "history": []}


def accepted_model(uri: str) -> str:
    """The model URI the record says is accepted (what a scheduled evaluation evaluates)."""
    record = read_record(uri)
    model = (record or {}).get("accepted", {}).get("model_uri")
    if not model:
        raise PipelineError(f"no accepted model recorded in {uri}: pass model_uri")
    return str(model)


def run(
    metrics: str,
    accepted: str,
    max_drop: float = 0.05,
    promote: bool = True,
    model_uri: str | None = None,
    run_id: str | None = None,
    against: str = "baseline",
    rebaseline: bool = False,
    registry_url: str | None = None,
) -> GateResult:
    """Judge `metrics` (an evaluation report URI) against the record at `accepted`; on a pass
    with `promote`, record `model_uri` (from run `run_id`) as the accepted model, in one write.
    With `registry_url` the promoted model is first registered in the Kubeflow Model Registry
    (a failure there leaves the record as it was: nothing is half promoted)."""
    if max_drop < 0:
        raise PipelineError(f"--max-drop must be >= 0, not {max_drop}")
    if against not in REFERENCES:
        raise PipelineError(f"--against must be one of {REFERENCES}, not {against!r}")
    current = _read(require_file(metrics, "--metrics"))
    bad = non_finite(current)
    if bad:
        raise GateFailed(f"evaluation gate failed: {metrics} has non-finite {', '.join(bad)}")
    record = read_record(accepted)
    first_run = record is None
    if record is None:
        log.info("gate: no promotion record at %s yet: this model becomes the baseline", accepted)
        drops: dict[str, float] = {}
    else:
        reference = record[against]["metrics"]
        bad = non_finite(reference)
        if bad:
            raise GateFailed(
                f"evaluation gate failed: the {against} in {accepted} has non-finite "
                f"{', '.join(bad)}; replace it with a good model's metrics"
            )
        drops, violations = compare(current, reference, max_drop)
        if violations:
            raise GateFailed(
                f"evaluation gate failed against the {against} in {accepted}: "
                + "; ".join(violations)
            )
        log.info("gate passed: largest per-domain r drop %.4f", max(drops.values(), default=0))
    if not promote:
        return GateResult(True, first_run, drops, [], False, record or {})
    entry = {
        "model_uri": model_uri,
        "run_id": run_id,
        "promoted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "metrics": current,
    }
    if record is None or rebaseline:
        record = {"format": FORMAT, "baseline": entry, "best": entry, "history": []}
    if mean_r(current) > mean_r(record["best"]["metrics"]):
        record["best"] = entry
    record["accepted"] = entry
    record["history"] = [
        *record.get("history", []),
        {k: entry[k] for k in ("run_id", "model_uri", "promoted_at")}
        | {"mean_per_domain_r": mean_r(current)},
    ]
    if registry_url:
        from pipekit.registry import register

        if not model_uri:
            raise PipelineError("registering in the model registry needs the model's URI")
        register(registry_url, MODEL_NAME, entry, version_properties(entry), AUTHOR)
    with replacing_uri(accepted, "w") as fh:  # the commit point of a promotion
        json.dump(record, fh, indent=2)
    log.info("gate: %s is now the accepted model (%s)", model_uri or metrics, accepted)
    return GateResult(True, first_run, drops, [], True, record)
