"""The bootstrap interval against scipy's own (an independent implementation); the bootstrap
over shared units against the variance worked out for the model that made the data."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from pipekit.stats import bootstrap_ci, bootstrap_intervals, unit_bootstrap_intervals


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


def _mean(x):
    return np.array([x.mean()])


def test_pairs_sharing_units_get_the_width_their_design_gives() -> None:
    """Rows are pairs of units (400 units, 4000 pairs, each unit in about 20): value = u_a +
    u_b + e, u and e standard normal. Over new draws of the units and the noise, the mean's
    variance is (sum_k m_k^2 + n) / n^2 (m_k: rows holding unit k); the unit bootstrap's
    interval is that wide (0.98-1.11 of it over seeds 3-14: the realised u's own spread),
    the row bootstrap's far narrower."""
    rng = np.random.default_rng(3)
    n_units, n = 400, 4000
    a = rng.integers(0, n_units, n)
    b = (a + rng.integers(1, n_units, n)) % n_units  # never a itself
    u = rng.normal(0, 1, n_units)
    x = u[a] + u[b] + rng.normal(0, 1, n)
    m = np.bincount(a, minlength=n_units) + np.bincount(b, minlength=n_units)
    expected = 2 * 1.96 * np.sqrt((np.sum(m**2) + n) / n**2)
    lo, hi = unit_bootstrap_intervals(_mean, [a, b], x, n_boot=2000)
    assert (hi - lo)[0] / expected == pytest.approx(1.0, abs=0.15)
    assert lo[0] < x.mean() < hi[0]
    rlo, rhi = bootstrap_intervals(_mean, x, n_boot=2000)
    assert (rhi - rlo)[0] < 0.4 * expected  # rows as if independent: about 0.27x


def test_a_unit_in_both_roles_of_a_row_is_weighted_once() -> None:
    """Every row its own unit, in both roles: independent rows, so the interval of the mean
    is the textbook 2 x 1.96 sd / sqrt(n), not the sqrt(3) times wider a squared weight gives."""
    rng = np.random.default_rng(5)
    x = rng.normal(0, 1, 1500)
    ids = np.arange(1500)
    lo, hi = unit_bootstrap_intervals(_mean, [ids, ids.copy()], x, n_boot=2000)
    assert (hi - lo)[0] / (2 * 1.96 * x.std() / np.sqrt(1500)) == pytest.approx(1.0, abs=0.12)


@pytest.mark.parametrize("r", [2, 3])
def test_rows_sharing_no_unit_get_the_published_overcount(r: int) -> None:
    """Owen & Eckles (2012): with product weights a row's own noise has weight variance
    2^r - 1, so r units a row, none shared, widen the mean's interval sqrt(2^r - 1) times over
    the textbook 2 x 1.96 sd / sqrt(n) (the conservative side the docs state)."""
    rng = np.random.default_rng(7)
    n = 2000
    x = rng.normal(0, 1, n)
    units = [np.arange(n) + k * n for k in range(r)]
    lo, hi = unit_bootstrap_intervals(_mean, units, x, n_boot=2000)
    textbook = 2 * 1.96 * x.std() / np.sqrt(n)
    assert (hi - lo)[0] / textbook == pytest.approx(np.sqrt(2**r - 1), rel=0.1)


def test_units_of_another_length_are_refused() -> None:
    with pytest.raises(ValueError, match="one non-zero length"):
        unit_bootstrap_intervals(_mean, [np.arange(3), np.arange(4)], np.ones(3))
