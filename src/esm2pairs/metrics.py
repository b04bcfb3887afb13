"""Binary classification metrics: AUROC and average precision (AUPRC, from pipekit), F1 at a
threshold, per segment pair."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from pipekit.metrics import auroc, average_precision


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
