"""Uncertainty of a metric on a finite test set: percentile bootstrap over its rows."""

from __future__ import annotations

import typing

import numpy as np


def bootstrap_ci(
    statistic: typing.Callable[..., float],
    *samples: np.ndarray,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """The percentile interval of `statistic(*samples)` over `n_boot` resamples of rows with
    replacement; the samples are resampled together (paired), so a ratio of two models' errors
    on the same points keeps their correlation."""
    n = len(samples[0])
    if n == 0 or any(len(s) != n for s in samples):
        raise ValueError(
            f"bootstrap needs samples of one non-zero length, got {[len(s) for s in samples]}"
        )
    rng = np.random.default_rng(seed)
    values = np.empty(n_boot)
    for b in range(n_boot):
        rows = rng.integers(0, n, n)
        values[b] = statistic(*(s[rows] for s in samples))
    lo, hi = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)
