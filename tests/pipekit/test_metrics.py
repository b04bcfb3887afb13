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
