"""Average precision and ROC AUC per protein over the measured labels only (-1: missing)."""

from __future__ import annotations

import numpy as np

from belka import PROTEINS
from pipekit.metrics import auroc, average_precision


def masked_scores(labels: np.ndarray, scores: np.ndarray) -> dict[str, dict[str, float]]:
    """{protein: {"ap", "auc", "n", "positives"}} over the rows where that label is known."""
    out = {}
    for j, p in enumerate(PROTEINS):
        known = labels[:, j] >= 0
        y, s = labels[known, j] == 1, scores[known, j]
        out[p] = {
            "ap": average_precision(y, s),
            "auc": auroc(y, s),
            "n": int(known.sum()),
            "positives": int(y.sum()),
        }
    return out


def mean_ap(scores: dict[str, dict[str, float]]) -> float:
    aps = [v["ap"] for v in scores.values() if np.isfinite(v["ap"])]
    return float(np.mean(aps)) if aps else float("nan")
