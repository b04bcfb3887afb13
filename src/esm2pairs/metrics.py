"""Binary classification metrics: AUROC, average precision (AUPRC), F1 at a threshold."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.stats import rankdata


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Probability that a random positive outscores a random negative (ties count half),
    from ranks (Mann-Whitney U); NaN with one class only."""
    y = np.asarray(labels).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = rankdata(scores)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """Sum over distinct score thresholds of (recall gain) x precision; NaN without positives."""
    y = np.asarray(labels).astype(bool)
    if not y.any():
        return math.nan
    order = np.argsort(-np.asarray(scores), kind="stable")
    s, yy = np.asarray(scores)[order], y[order]
    tp = np.cumsum(yy)
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # end of each group of equal scores
    precision = tp[last] / (last + 1)
    recall = tp[last] / y.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def f1(labels: np.ndarray, scores: np.ndarray, threshold: float) -> float:
    y = np.asarray(labels).astype(bool)
    pred = np.asarray(scores) >= threshold
    tp = int((pred & y).sum())
    denom = int(pred.sum()) + int(y.sum())
    return 2 * tp / denom if denom else math.nan


def summary(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float | int]:
    return {
        "n": len(labels),
        "n_pos": int(np.asarray(labels).sum()),
        "auroc": auroc(labels, scores),
        "auprc": average_precision(labels, scores),
        "f1": f1(labels, scores, threshold),
    }


def per_segment_pair(pred: pd.DataFrame, threshold: float) -> dict[str, dict]:
    """The same metrics for each (function a, function b) pair of segments."""
    out = {}
    for (fa, fb), g in pred.groupby(["func_a", "func_b"], sort=True):
        out[f"{fa} | {fb}"] = summary(g["label"].to_numpy(), g["score"].to_numpy(), threshold)
    return out
