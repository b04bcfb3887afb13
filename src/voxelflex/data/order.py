"""The order that sorts rows by several integer keys, found cheaply when the rows are nearly
there already: a table written in order (mdCATH's CSV, the ingest's) needs no sort at all,
and one whose domains come as contiguous blocks in another order only a permutation of the
blocks. Otherwise a stable `np.lexsort`."""

from __future__ import annotations

import numpy as np


def _in_order(keys: list[np.ndarray], skip: np.ndarray | None = None) -> bool:
    """Whether consecutive rows are in lexicographic order of `keys` (most significant
    first), not comparing row i with row i + 1 where `skip[i]`."""
    undecided = np.ones(len(keys[0]) - 1, dtype=bool) if skip is None else ~skip
    for key in keys:
        a, b = key[:-1], key[1:]
        if (undecided & (a > b)).any():
            return False
        undecided &= a == b
    return True


def lex_order(keys: list[np.ndarray]) -> np.ndarray | None:
    """A stable permutation sorting rows by `keys` (most significant first); None when the
    rows are in order already."""
    n = len(keys[0])
    if n < 2 or _in_order(keys):
        return None
    first = keys[0]
    starts = np.flatnonzero(np.r_[True, first[1:] != first[:-1]])
    boundary = np.zeros(n - 1, dtype=bool)
    boundary[starts[1:] - 1] = True
    if len(starts) == len(np.unique(first[starts])) and _in_order(keys[1:], boundary):
        # each value of the first key is one block, in order inside: move the blocks
        lengths = np.diff(np.r_[starts, n])
        moved = np.argsort(first[starts], kind="stable")
        new_starts = np.r_[0, np.cumsum(lengths[moved])[:-1]]
        return (
            np.arange(n)
            - np.repeat(new_starts, lengths[moved])
            + np.repeat(starts[moved], lengths[moved])
        )
    return np.lexsort(keys[::-1])
