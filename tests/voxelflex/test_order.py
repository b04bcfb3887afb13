"""The cheap sort order agrees with a plain stable lexsort on every shape of input."""

from __future__ import annotations

import numpy as np
import pytest

from voxelflex.data.order import lex_order


def _reference(keys):
    return np.lexsort(keys[::-1])


@pytest.mark.parametrize("shape", ["sorted", "blocks", "shuffled", "ties", "one"])
def test_lex_order_sorts_like_a_stable_lexsort(shape: str) -> None:
    rng = np.random.default_rng(0)
    dom = np.repeat(np.arange(50), rng.integers(1, 30, 50))
    resid = np.concatenate([np.arange((dom == d).sum()) for d in range(50)])
    temp = rng.integers(0, 5, len(dom))
    if shape == "sorted":
        order = np.lexsort((temp, resid, dom))
        keys = [dom[order], resid[order], temp[order]]
    elif shape == "blocks":  # each domain contiguous and sorted, the domains permuted
        sort = np.lexsort((temp, resid, dom))
        d, r, t = dom[sort], resid[sort], temp[sort]
        perm = rng.permutation(50)
        parts = [np.flatnonzero(d == p) for p in perm]
        idx = np.concatenate(parts)
        keys = [d[idx], r[idx], t[idx]]
    elif shape == "ties":  # repeated rows: the stable order keeps file order among them
        keys = [np.zeros(20, int), np.repeat(np.arange(5), 4)[::-1].copy(), np.zeros(20, int)]
    elif shape == "one":
        keys = [np.array([3]), np.array([1]), np.array([0])]
    else:
        idx = rng.permutation(len(dom))
        keys = [dom[idx], resid[idx], temp[idx]]
    got = lex_order(keys)
    want = _reference(keys)
    if got is None:
        assert np.array_equal(want, np.arange(len(keys[0])))
    else:
        assert np.array_equal(got, want)
