"""The bootstrap interval against scipy's own (an independent implementation)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from pipekit.stats import bootstrap_ci


def test_a_paired_ratio_interval_matches_scipys_percentile_bootstrap() -> None:
    rng = np.random.default_rng(7)
    a = rng.lognormal(0, 1, 300)
    b = a * rng.lognormal(0.2, 0.3, 300)  # correlated with a, as two models on one test set

    def ratio(x, y, axis=-1):
        return np.mean(y, axis=axis) / np.mean(x, axis=axis)

    ours = bootstrap_ci(lambda x, y: ratio(x, y), a, b, n_boot=4000)
    ref = stats.bootstrap(
        (a, b),
        ratio,
        paired=True,
        vectorized=True,
        n_resamples=4000,
        method="percentile",
        random_state=np.random.default_rng(1),
    ).confidence_interval
    # two Monte Carlo estimates of one interval: equal to their resampling noise
    assert ours == pytest.approx((ref.low, ref.high), abs=0.02)
    assert ours[0] < ratio(a, b) < ours[1]


def test_unequal_samples_are_refused() -> None:
    with pytest.raises(ValueError, match="one non-zero length"):
        bootstrap_ci(np.mean, np.ones(3), np.ones(4))
