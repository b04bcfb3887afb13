"""Average precision and ROC AUC per protein over the measured labels only (-1: missing)."""

from __future__ import annotations

import numpy as np

from belka import PROTEINS


def average_precision(y: np.ndarray, score: np.ndarray) -> float:
    """Mean of the precision at each positive, ranked by descending score (ties: the whole
    tied group counts at once, as a step function of the threshold). NaN without positives."""
    y = np.asarray(y, dtype=bool)
    if not y.any():
        return float("nan")
    order = np.argsort(-score, kind="mergesort")
    s, t = score[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # the end of each tied group
    tp = np.cumsum(t)[last]
    precision = tp / (last + 1)
    recall_gain = np.diff(np.r_[0, tp]) / y.sum()
    return float(np.sum(precision * recall_gain))


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """The probability that a positive outranks a negative (ties count half)."""
    y = np.asarray(y, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    from scipy.stats import rankdata

    ranks = rankdata(score)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def masked_scores(labels: np.ndarray, scores: np.ndarray) -> dict[str, dict[str, float]]:
    """{protein: {"ap", "auc", "n", "positives"}} over the rows where that label is known."""
    out = {}
    for j, p in enumerate(PROTEINS):
        known = labels[:, j] >= 0
        y, s = labels[known, j] == 1, scores[known, j]
        out[p] = {
            "ap": average_precision(y, s),
            "auc": roc_auc(y, s),
            "n": int(known.sum()),
            "positives": int(y.sum()),
        }
    return out


def mean_ap(scores: dict[str, dict[str, float]]) -> float:
    aps = [v["ap"] for v in scores.values() if np.isfinite(v["ap"])]
    return float(np.mean(aps)) if aps else float("nan")
