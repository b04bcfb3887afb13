"""AP and ROC AUC (every system's) against scikit-learn's, with tied scores."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from pipekit.metrics import auroc, average_precision


def test_ap_and_auc_agree_with_scikit_learn_with_ties() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        y = rng.random(300) < 0.05
        y[0] = True
        score = np.round(rng.random(300) + 0.4 * y, 1)  # rounded: many ties
        assert np.isclose(average_precision(y, score), average_precision_score(y, score))
        assert np.isclose(auroc(y, score), roc_auc_score(y, score))
    assert np.isnan(average_precision(np.zeros(5, bool), np.ones(5)))


def test_the_pr_curve_is_scikit_learns_without_its_corner_and_never_starts_at_zero() -> None:
    from sklearn.metrics import precision_recall_curve

    from pipekit.metrics import pr_curve

    rng = np.random.default_rng(1)
    y = rng.random(200) < 0.1
    y[0] = True
    score = np.round(rng.random(200) + 0.3 * y, 1)
    score[np.argmax(score)] += 1.0  # the top-ranked item alone ...
    y[np.argmax(score)] = False  # ... is a negative: a curve through (0, 0) would start there
    recall, precision = pr_curve(y, score)
    p_ref, r_ref, _ = precision_recall_curve(y, score)
    # scikit-learn's points where recall rises, highest threshold first (it lists them
    # lowest first and ends with its (recall 0, precision 1) corner)
    r_ref, p_ref = r_ref[::-1][1:], p_ref[::-1][1:]
    keep = np.diff(np.r_[0.0, r_ref]) > 0
    assert np.allclose(recall[1:], r_ref[keep]) and np.allclose(precision[1:], p_ref[keep])
    assert recall[0] == 0 and precision[0] == precision[1] > 0
    # the step curve's area is scikit-learn's average precision
    assert np.isclose(np.sum(np.diff(recall) * precision[1:]), average_precision_score(y, score))
