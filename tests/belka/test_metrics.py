"""Masked AP and AUC against scikit-learn's, labels missing ignored."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score

from belka.metrics import masked_scores


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


def test_evaluation_intervals_match_scipys_bootstrap_of_scikit_learns_ap() -> None:
    """Every AP's interval against scipy's percentile bootstrap of scikit-learn's AP (two
    independent implementations), and the model-minus-baseline interval paired: zero for a
    baseline equal to the model, above zero for a model that ranks every binder first."""
    from scipy import stats

    from belka.steps.make_submission import _grouped

    rng = np.random.default_rng(3)
    n = 600
    labels = (rng.random((n, 3)) < 0.08).astype(np.int8)
    labels[rng.random((n, 3)) < 0.2] = -1
    shared = (rng.random(n) < 0.5).astype(np.int8)
    model = rng.random((n, 3)) + 0.6 * (labels == 1)
    perfect = model + 10.0 * (labels == 1)
    report = _grouped(
        labels, shared, {"model": model, "same": model.copy(), "best": perfect}, n_boot=2000, seed=0
    )
    keep = shared == 0
    for j, p in enumerate(("BRD4", "HSA", "sEH")):
        y, s = labels[keep, j], model[keep, j]

        def ap(rows, y=y, s=s):
            rows = rows.astype(int)
            known = y[rows] >= 0
            return average_precision_score(y[rows][known] == 1, s[rows][known])

        ref = stats.bootstrap(
            (np.arange(len(y)),),
            ap,
            vectorized=False,
            n_resamples=2000,
            method="percentile",
            random_state=np.random.default_rng(1),
        ).confidence_interval
        ours = report["model"]["non_shared"]["per_protein"][p]["ap_ci95"]
        assert np.allclose(ours, (ref.low, ref.high), atol=0.03), (p, ours, ref)
        assert report["model"]["non_shared"]["positives"][p] == int((y == 1).sum())
    lo, hi = report["model"]["all"]["mean_ap_ci95"]
    assert lo < report["model"]["all"]["mean_ap"] < hi
    assert report["model_minus"]["all"]["same"] == {"mean_ap_difference": 0.0, "ci95": [0.0, 0.0]}
    best = report["model_minus"]["shared"]["best"]
    assert best["ci95"][1] < 0 and best["mean_ap_difference"] < 0  # the model is worse
