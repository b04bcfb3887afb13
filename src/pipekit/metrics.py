"""Binary ranking metrics every system reports: ROC AUC and average precision, exact with
tied scores (a tied group counts at once, as scikit-learn's do)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Probability that a random positive outscores a random negative (ties count half),
    from ranks (Mann-Whitney U); NaN with one class only."""
    y = np.asarray(labels).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = pd.Series(scores).rank().to_numpy()  # tied scores share their mean rank
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def threshold_counts(
    labels: np.ndarray, scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """At each distinct score, highest first: the score, and the positives and the items
    scoring at least that (a tied group counts at once)."""
    s = np.asarray(scores)
    order = np.argsort(-s, kind="stable")
    s, y = s[order], np.asarray(labels).astype(bool)[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # end of each group of equal scores
    return s[last], np.cumsum(y)[last], last + 1


def pr_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Recall and precision at each distinct score threshold, highest first, where recall
    rises, led by (0, the first precision): the step curve (matplotlib's
    `drawstyle="steps-pre"`) whose area is the average precision. It never starts at (0, 0),
    whatever the top-ranked item is. Empty arrays without positives."""
    y = np.asarray(labels).astype(bool)
    if not y.any():
        return np.zeros(0), np.zeros(0)
    _, tp, n = threshold_counts(y, scores)
    rises = np.diff(np.r_[0, tp]) > 0
    precision = tp[rises] / n[rises]
    recall = tp[rises] / y.sum()
    return np.r_[0.0, recall], np.r_[precision[:1], precision]


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """Sum over distinct score thresholds, highest first, of (recall gain) x precision: the
    area under `pr_curve`; NaN without positives."""
    recall, precision = pr_curve(labels, scores)
    if not len(recall):
        return math.nan
    return float(np.sum(np.diff(recall) * precision[1:]))
