"""Binary ranking metrics every system reports: ROC AUC and average precision, exact with
tied scores (a tied group counts at once, as scikit-learn's do)."""

from __future__ import annotations

import math

import numpy as np
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
    """Sum over distinct score thresholds, highest first, of (recall gain) x precision; NaN
    without positives."""
    y = np.asarray(labels).astype(bool)
    if not y.any():
        return math.nan
    s = np.asarray(scores)
    order = np.argsort(-s, kind="stable")
    s, yy = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # end of each group of equal scores
    tp = np.cumsum(yy)[last]
    precision = tp / (last + 1)
    recall = tp / y.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
