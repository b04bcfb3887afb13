"""Average precision and ROC AUC per protein over the measured labels only (-1: missing)."""

from __future__ import annotations

from typing import Any

import numpy as np

from belka import PROTEINS
from pipekit.metrics import auroc, average_precision


def _measured(labels: np.ndarray, scores: np.ndarray, j: int) -> tuple[np.ndarray, np.ndarray]:
    """Protein j's binding (bool) and scores over the rows where its label is known."""
    known = labels[:, j] >= 0
    return labels[known, j] == 1, scores[known, j]


def protein_aps(labels: np.ndarray, scores: np.ndarray) -> list[float]:
    """Each protein's average precision over its measured rows (NaN without a binder)."""
    return [average_precision(*_measured(labels, scores, j)) for j in range(len(PROTEINS))]


def finite_mean(values: list[float]) -> float:
    """The mean of the values that are defined (an AP is NaN without a binder); NaN if none."""
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def masked_scores(labels: np.ndarray, scores: np.ndarray) -> dict[str, dict[str, Any]]:
    """{protein: {"ap", "auc", "n", "positives"}} over the rows where that label is known."""
    out = {}
    for j, p in enumerate(PROTEINS):
        y, s = _measured(labels, scores, j)
        out[p] = {
            "ap": average_precision(y, s),
            "auc": auroc(y, s),
            "n": len(y),
            "positives": int(y.sum()),
        }
    return out


def mean_ap(scores: dict[str, dict[str, Any]]) -> float:
    return finite_mean([v["ap"] for v in scores.values()])
