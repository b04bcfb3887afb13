"""gate: `pipekit.gate` judging the classifier's overall AUROC and AUPRC (each may fall by at
most `max_drop` against the pinned baseline, or the best model accepted so far)."""

from __future__ import annotations

import math
from typing import Any

from pipekit.gate import Judge, finite

SCORES = ("auroc", "auprc")


def scores(report: dict[str, Any]) -> dict[str, float | None]:
    return {k: report["overall"].get(k) for k in SCORES}


def non_finite(report: dict[str, Any]) -> list[str]:
    return [k for k in SCORES if not finite(report["overall"].get(k))]


def version_properties(entry: dict[str, Any]) -> dict[str, Any]:
    props: dict[str, Any] = {
        k: math.nan if v is None else float(v) for k, v in scores(entry["metrics"]).items()
    }
    props["run_id"] = str(entry.get("run_id") or "")
    props["promoted_at"] = str(entry["promoted_at"])
    return props


JUDGE = Judge(
    scores=scores,
    non_finite=non_finite,
    describe=lambda name: f"{name.upper()}",
    label="AUROC/AUPRC",
    summary_key="mean_auroc_auprc",
    format="esm2pairs-promotion-v1",
    model_name="esm2pairs",
    author="esm2pairs evaluation gate",
    properties=version_properties,
)
