"""Uncertainty of a metric on a finite test set: percentile bootstrap over its rows."""

from __future__ import annotations

import typing
import warnings

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
    lo, hi = bootstrap_intervals(
        lambda *s: np.array([statistic(*s)]), *samples, n_boot=n_boot, level=level, seed=seed
    )
    return float(lo[0]), float(hi[0])


def bootstrap_intervals(
    statistics: typing.Callable[..., np.ndarray],
    *samples: np.ndarray,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """`bootstrap_ci` for a vector of statistics computed on the same resamples (several
    models' scores and their differences: paired). A statistic undefined on a resample (NaN:
    no positive drawn) is left out of its own interval; one never defined gives NaN."""
    n = len(samples[0])
    if n == 0 or any(len(s) != n for s in samples):
        raise ValueError(
            f"bootstrap needs samples of one non-zero length, got {[len(s) for s in samples]}"
        )
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        rows = rng.integers(0, n, n)
        values.append(np.asarray(statistics(*(s[rows] for s in samples)), dtype=float))
    stacked = np.stack(values)
    q = [(1 - level) / 2, (1 + level) / 2]
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
        lo, hi = np.nanquantile(stacked, q, axis=0)
    return lo, hi
