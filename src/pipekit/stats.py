"""Uncertainty of a metric on a finite test set: percentile bootstrap over its rows, or, where
rows share sampling units (pairs of proteins), over the units."""

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
    return _percentiles(values, level)


def unit_bootstrap_intervals(
    statistics: typing.Callable[..., np.ndarray],
    units: typing.Sequence[np.ndarray],
    *samples: np.ndarray,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """`bootstrap_intervals` for rows that share sampling units: row i belongs to the units
    `units[0][i]`, `units[1][i]`, ... (a pair's two proteins). Each resample gives every
    unit a Poisson(1) weight and repeats each row by the product of its distinct units'
    weights: the product-weight bootstrap for data arrays (Owen & Eckles 2012, Ann. Appl.
    Stat. 6:895), one weight per unit whichever role it plays. Rows that share a unit rise
    and fall together, as they do between samples of the units; resampling rows treats them
    as independent and gives intervals too narrow."""
    n = len(samples[0])
    if n == 0 or any(len(s) != n for s in (*samples, *units)):
        raise ValueError(
            "bootstrap needs samples and units of one non-zero length, got "
            f"{[len(s) for s in (*samples, *units)]}"
        )
    ids = np.unique(np.concatenate([np.asarray(u) for u in units]), return_inverse=True)[1]
    codes = ids.reshape(len(units), n)
    # a unit twice in one row (both roles) counts once: its weight is not squared
    repeated = np.zeros_like(codes, dtype=bool)
    for k in range(1, len(units)):
        repeated[k] = (codes[k][None, :] == codes[:k]).any(0)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        w = rng.poisson(1.0, codes.max() + 1)
        times = np.where(repeated, 1, w[codes]).prod(0)
        rows = np.repeat(np.arange(n), times)
        values.append(np.asarray(statistics(*(s[rows] for s in samples)), dtype=float))
    return _percentiles(values, level)


def _percentiles(values: list[np.ndarray], level: float) -> tuple[np.ndarray, np.ndarray]:
    stacked = np.stack(values)
    q = [(1 - level) / 2, (1 + level) / 2]
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
        lo, hi = np.nanquantile(stacked, q, axis=0)
    return lo, hi
