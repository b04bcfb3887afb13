"""Evaluation gate and promotion, for any system's evaluation report.

The accepted file (a URI) is a promotion record, written in one piece (one upload, or temp
file + rename), so promotion is one atomic act:

    {"format": "<system>-promotion-v1",
     "accepted": ENTRY,   the model now accepted: what a scheduled evaluation evaluates
     "baseline": ENTRY,   pinned: what every later model is compared with (the first accepted
                          model, until `rebaseline`)
     "best": ENTRY,       the best accepted so far (the judge's summary score)
     "history": [{run_id, model_uri, promoted_at, <summary key>}, ...]}
    ENTRY = {"model_uri", "run_id", "promoted_at", "metrics": <evaluation report>}

A `Judge` says how a system reads its report: named scores (higher is better), each of which
may fall by at most `max_drop` against the reference; a score defined in the reference but
undefined now is a failure. Comparing with a pinned reference, never with the last pass,
keeps small drops from adding up. Non-finite headline numbers never pass and are never a
reference. The first run (no record yet) passes and pins its model as the baseline. An older
record that is a bare report is read as a baseline whose model is unknown.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipekit.atomic import replacing_uri
from pipekit.errors import PipelineError
from pipekit.uri import open_uri, require_file, uri_exists

log = logging.getLogger(__name__)

REFERENCES = ("baseline", "best")
Report = dict[str, Any]


class GateFailed(PipelineError):
    """The model got worse than the reference by more than the allowed drop."""


@dataclass(frozen=True)
class Judge:
    """How one system's evaluation report is judged and recorded."""

    scores: Callable[[Report], dict[str, float | None]]  # name -> score (None: undefined)
    non_finite: Callable[[Report], list[str]]  # headline numbers that are NaN or infinite
    describe: Callable[[str], str]  # a score's name in messages ("320" -> "320 K: per-domain r")
    label: str  # what the scores are ("per-domain r")
    summary_key: str  # the history's name for the mean score
    format: str  # the promotion record's format tag
    model_name: str  # the registered model in the Kubeflow Model Registry
    author: str
    properties: Callable[[dict[str, Any]], dict[str, Any]]  # a registered version's properties


@dataclass(frozen=True)
class GateResult:
    passed: bool
    first_run: bool
    drops: dict[str, float] = field(default_factory=dict)  # score name -> reference - now
    violations: list[str] = field(default_factory=list)
    promoted: bool = False
    record: dict[str, Any] = field(default_factory=dict)  # the promotion record after the gate


def finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def mean_score(judge: Judge, report: Report) -> float:
    values = [float(v) for v in judge.scores(report).values() if v is not None and finite(v)]
    return sum(values) / len(values) if values else -math.inf


def compare(
    judge: Judge, current: Report, reference: Report, max_drop: float
) -> tuple[dict[str, float], list[str]]:
    now, before = judge.scores(current), judge.scores(reference)
    drops: dict[str, float] = {}
    violations: list[str] = []
    for name, ref in before.items():
        if ref is None or not math.isfinite(ref):
            continue  # nothing to hold the model to on this score
        value = now.get(name)
        if value is None or not math.isfinite(value):
            violations.append(f"{judge.describe(name)} undefined now (reference {ref:.4f})")
            continue
        drops[name] = ref - value
        if ref - value > max_drop:
            violations.append(
                f"{judge.describe(name)} {value:.4f} vs reference {ref:.4f} "
                f"(drop {ref - value:.4f} > {max_drop})"
            )
    return drops, violations


def _read(uri: str) -> Report:
    with open_uri(uri, "r") as fh:
        return json.load(fh)


def read_record(uri: str, fmt: str) -> dict[str, Any] | None:
    """The promotion record at `uri` (an older bare report becomes one), or None."""
    if not uri_exists(uri):
        return None
    data = _read(uri)
    if data.get("format") == fmt:
        return data
    entry = {"model_uri": None, "run_id": None, "promoted_at": None, "metrics": data}
    return {"format": fmt, "accepted": entry, "baseline": entry, "best": entry, "history": []}


def accepted_model(uri: str, fmt: str) -> str:
    """The model URI the record says is accepted (what a scheduled evaluation evaluates)."""
    record = read_record(uri, fmt)
    model = (record or {}).get("accepted", {}).get("model_uri")
    if not model:
        raise PipelineError(f"no accepted model recorded in {uri}: pass model_uri")
    return str(model)


def run(
    judge: Judge,
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
    bad = judge.non_finite(current)
    if bad:
        raise GateFailed(f"evaluation gate failed: {metrics} has non-finite {', '.join(bad)}")
    record = read_record(accepted, judge.format)
    first_run = record is None
    if record is None:
        log.info("gate: no promotion record at %s yet: this model becomes the baseline", accepted)
        drops: dict[str, float] = {}
    else:
        reference = record[against]["metrics"]
        bad = judge.non_finite(reference)
        if bad:
            raise GateFailed(
                f"evaluation gate failed: the {against} in {accepted} has non-finite "
                f"{', '.join(bad)}; replace it with a good model's metrics"
            )
        drops, violations = compare(judge, current, reference, max_drop)
        if violations:
            raise GateFailed(
                f"evaluation gate failed against the {against} in {accepted}: "
                + "; ".join(violations)
            )
        log.info("gate passed: largest %s drop %.4f", judge.label, max(drops.values(), default=0))
    if not promote:
        return GateResult(True, first_run, drops, [], False, record or {})
    entry = {
        "model_uri": model_uri,
        "run_id": run_id,
        "promoted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "metrics": current,
    }
    if record is None or rebaseline:
        record = {"format": judge.format, "baseline": entry, "best": entry, "history": []}
    if mean_score(judge, current) > mean_score(judge, record["best"]["metrics"]):
        record["best"] = entry
    record["accepted"] = entry
    record["history"] = [
        *record.get("history", []),
        {k: entry[k] for k in ("run_id", "model_uri", "promoted_at")}
        | {judge.summary_key: mean_score(judge, current)},
    ]
    if registry_url:
        from pipekit.registry import register

        if not model_uri:
            raise PipelineError("registering in the model registry needs the model's URI")
        register(registry_url, judge.model_name, entry, judge.properties(entry), judge.author)
    with replacing_uri(accepted, "w") as fh:  # the commit point of a promotion
        json.dump(record, fh, indent=2)
    log.info("gate: %s is now the accepted model (%s)", model_uri or metrics, accepted)
    return GateResult(True, first_run, drops, [], True, record)
