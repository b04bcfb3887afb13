"""Pair building: the rule checked pair by pair against the protein table (not against how
the code builds it), the negatives' draw uniform without replacement, and a time that grows
with the proteins, not with their square."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from esm2pairs.steps.pairs import make_pairs

FUNCS = ["HA", "NA", "M1", "PB2"]


def _table(n_isolates: int, funcs: list[str], n_variants: int, seed: int = 0) -> pd.DataFrame:
    """Isolates with one protein per function; sequences drawn from `n_variants` per
    function, so identical sequences across isolates are common (as in influenza)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_isolates):
        for f in funcs:
            rows.append((f"iso{i}", f, f"{f}-{i}", f"{f}SEQ{rng.integers(n_variants)}"))
    return pd.DataFrame(rows, columns=["assembly_id", "function", "brc_fea_id", "esm2_ready_seq"])


def test_every_pair_keeps_the_rule_and_negatives_are_drawn_without_replacement() -> None:
    df = _table(60, FUNCS, n_variants=5)
    pairs = make_pairs(df, 2.5, np.random.default_rng(0))
    info = df.set_index("brc_fea_id")
    iso, func, seq = (info[c] for c in ("assembly_id", "function", "esm2_ready_seq"))

    blocks = np.split(pairs.to_numpy(), np.flatnonzero(pairs["label"].to_numpy() == 1)[1:])
    n_pos = len(blocks)
    assert n_pos == 60 * 6  # every function pair of every isolate, C(4, 2) = 6
    n_neg = []
    for block in blocks:
        (a, b, label, fa, fb), negs = block[0], block[1:]
        assert label == 1 and iso[a] == iso[b] and fa == func[a] < fb == func[b]
        assert (negs[:, 2] == 0).all() and (negs[:, 0] == a).all()
        assert len(set(negs[:, 1])) == len(negs)  # no negative twice for one positive
        for _, o, _, nfa, nfb in negs:
            assert func[o] == fb == nfb and nfa == fa and iso[o] != iso[a] and seq[o] != seq[b]
        n_neg.append(len(negs))
    assert set(n_neg) <= {2, 3} and abs(np.mean(n_neg) - 2.5) < 0.1


def test_negatives_are_uniform_over_the_valid_proteins() -> None:
    """One isolate's HA-NA positive drawn 600 times: each valid NA protein (another
    sequence than b's) comes up equally often; none with b's sequence ever does."""
    df = _table(12, ["HA", "NA"], n_variants=3, seed=4)
    b_seq = df.loc[(df.assembly_id == "iso0") & (df.function == "NA"), "esm2_ready_seq"].item()
    valid = df[(df.function == "NA") & (df.esm2_ready_seq != b_seq)]["brc_fea_id"]
    counts = pd.Series(0, index=valid.to_numpy())
    rng = np.random.default_rng(1)
    for _ in range(600):
        pairs = make_pairs(df, 1.0, rng)
        first_block = pairs.iloc[1:2]  # iso0's positive, then its negative
        counts[first_block["brc_b"].item()] += 1
    expected = 600 / len(valid)
    # chi-square against uniform: the 99.9% quantile for up to 11 degrees of freedom is < 32
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert counts.sum() == 600 and len(valid) >= 5 and chi2 < 32, counts.to_dict()


def test_building_grows_linearly_with_the_isolates() -> None:
    t = {}
    for n in (4_000, 16_000):
        df = _table(n, FUNCS, n_variants=50)
        t0 = time.perf_counter()
        pairs = make_pairs(df, 1.0, np.random.default_rng(0))
        t[n] = time.perf_counter() - t0
        assert len(pairs) == 2 * 6 * n
    # 4x the isolates: about 4x the time (the code before took 2.3x per doubling, and its
    # 16,000 isolates alone took minutes)
    assert t[16_000] < 3.0 and t[16_000] / max(t[4_000], 0.05) < 8, t
