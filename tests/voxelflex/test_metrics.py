"""Regression metrics against values that do not come from our code."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from voxelflex.training.metrics import regression_metrics, spearman


def test_spearman_worked_by_hand_with_a_tie() -> None:
    # ranks of p: 1, 2, 3.5, 5, 3.5; deviations from the mean rank 3: y -2 -1 0 1 2,
    # p -2 -1 .5 2 .5; r = 8 / sqrt(10 * 9.5)
    assert spearman(np.array([1, 2, 3, 4, 5.0]), np.array([5, 6, 7, 8, 7.0])) == pytest.approx(
        8 / math.sqrt(95)
    )


def test_spearman_and_pearson_agree_with_scipy_on_tied_data() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 6, 200).astype(float)  # many ties on both sides
    p = y + rng.integers(0, 4, 200)
    m = regression_metrics(y, p)
    assert m["spearman"] == pytest.approx(stats.spearmanr(y, p).statistic, rel=1e-12)
    assert m["pearson"] == pytest.approx(stats.pearsonr(y, p).statistic, rel=1e-12)


def test_undefined_correlations_are_nan() -> None:
    assert math.isnan(spearman(np.array([1.0, 2.0, 3.0]), np.array([4.0, 4.0, 4.0])))
    assert math.isnan(spearman(np.array([1.0]), np.array([2.0])))
