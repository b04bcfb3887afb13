"""Masked AP and AUC against scikit-learn's, labels missing ignored."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from belka.metrics import average_precision, masked_scores, roc_auc


def test_ap_and_auc_agree_with_scikit_learn_with_ties() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        y = rng.random(300) < 0.05
        y[0] = True
        score = np.round(rng.random(300) + 0.4 * y, 1)  # rounded: many ties
        assert np.isclose(average_precision(y, score), average_precision_score(y, score))
        assert np.isclose(roc_auc(y, score), roc_auc_score(y, score))
    assert np.isnan(average_precision(np.zeros(5, bool), np.ones(5)))


def test_missing_labels_are_left_out_per_protein() -> None:
    rng = np.random.default_rng(1)
    labels = (rng.random((400, 3)) < 0.1).astype(np.int8)
    labels[rng.random((400, 3)) < 0.3] = -1
    scores = rng.random((400, 3)) + 0.3 * (labels == 1)
    out = masked_scores(labels, scores)
    for j, p in enumerate(("BRD4", "HSA", "sEH")):
        known = labels[:, j] >= 0
        assert out[p]["n"] == int(known.sum())
        want = average_precision_score(labels[known, j] == 1, scores[known, j])
        assert np.isclose(out[p]["ap"], want)
