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
    n = _length(samples, "samples")
    rng = np.random.default_rng(seed)
    draws = (rng.integers(0, n, n) for _ in range(n_boot))
    return _intervals(statistics, samples, draws, level)


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
    as independent and gives intervals too narrow.

    The method is conservative (Owen & Eckles): two rows sharing s of their r units get
    weights of covariance 2^s - 1, so rows sharing one unit are counted at their covariance,
    but a row's own noise enters with variance 2^r - 1 instead of 1. Rows that share nothing
    get intervals sqrt(3) (two units a row) or sqrt(7) (three) times the row bootstrap's; the
    intervals are exact only where the units' sharing dominates the rows' own noise."""
    n = _length((*samples, *units), "samples and units")
    ids = np.unique(np.concatenate([np.asarray(u) for u in units]), return_inverse=True)[1]
    codes = ids.reshape(len(units), n)
    # a unit twice in one row (both roles) counts once: its weight is not squared
    repeated = np.zeros_like(codes, dtype=bool)
    for k in range(1, len(units)):
        repeated[k] = (codes[k][None, :] == codes[:k]).any(0)
    rng = np.random.default_rng(seed)

    def draw() -> np.ndarray:
        w = rng.poisson(1.0, codes.max() + 1)
        return np.repeat(np.arange(n), np.where(repeated, 1, w[codes]).prod(0))

    return _intervals(statistics, samples, (draw() for _ in range(n_boot)), level)


def _length(arrays: typing.Sequence[np.ndarray], what: str) -> int:
    """The rows' count, the same in every array and not zero."""
    n = len(arrays[0])
    if n == 0 or any(len(a) != n for a in arrays):
        raise ValueError(
            f"bootstrap needs {what} of one non-zero length, got {[len(a) for a in arrays]}"
        )
    return n


def _intervals(
    statistics: typing.Callable[..., np.ndarray],
    samples: typing.Sequence[np.ndarray],
    draws: typing.Iterable[np.ndarray],
    level: float,
) -> tuple[np.ndarray, np.ndarray]:
    """The percentile interval of each statistic over the resamples `draws` (rows to take)."""
    values = [np.asarray(statistics(*(s[rows] for s in samples)), dtype=float) for rows in draws]
    stacked = np.stack(values)
    q = [(1 - level) / 2, (1 + level) / 2]
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
        lo, hi = np.nanquantile(stacked, q, axis=0)
    return lo, hi
