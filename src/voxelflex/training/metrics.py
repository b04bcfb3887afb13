"""Regression metrics in numpy; NaN where a metric is undefined (too few or constant values).

No scipy here: `scipy.stats` costs every training process ~1 s to import, for one rank."""

from __future__ import annotations

import numpy as np
import pandas as pd


def pearson(y: np.ndarray, p: np.ndarray) -> float:
    if len(y) < 2 or np.std(y) == 0 or np.std(p) == 0:
        return float("nan")
    return float(np.corrcoef(y, p)[0, 1])


def spearman(y: np.ndarray, p: np.ndarray) -> float:
    """Pearson r of the ranks, tied values sharing their mean rank (Spearman's definition)."""
    return pearson(pd.Series(y).rank().to_numpy(), pd.Series(p).rank().to_numpy())


def regression_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    err = p - y
    ss_tot = float(np.sum((y - y.mean()) ** 2)) if len(y) else 0.0
    return {
        "n": len(y),
        "pearson": pearson(y, p),
        "spearman": spearman(y, p),
        "rmse": float(np.sqrt(np.mean(err**2))) if len(y) else float("nan"),
        "mae": float(np.mean(np.abs(err))) if len(y) else float("nan"),
        "r2": 1.0 - float(np.sum(err**2)) / ss_tot if ss_tot > 0 else float("nan"),
    }


def domain_pearsons(df: pd.DataFrame, pred_col: str, target_col: str = "target_rmsf") -> pd.Series:
    """Pearson r within each domain (NaN where undefined), by domain_id in order of first
    appearance (one temperature's rows expected)."""
    return pd.Series(
        {
            d: pearson(g[target_col].to_numpy(), g[pred_col].to_numpy())
            for d, g in df.groupby("domain_id", sort=False)
        },
        dtype=float,
    )


def mean_per_domain_pearson(
    df: pd.DataFrame, pred_col: str, target_col: str = "target_rmsf"
) -> dict[str, float]:
    """Mean over domains of Pearson r within each domain (one temperature's rows expected).

    Pooling domains and temperatures rewards getting the overall level right; the mean of
    per-domain r asks whether the model ranks residues within a protein."""
    rs = domain_pearsons(df, pred_col, target_col)
    finite = [r for r in rs if np.isfinite(r)]
    return {
        "mean_per_domain_pearson": float(np.mean(finite)) if finite else float("nan"),
        "n_domains": len(finite),
    }
