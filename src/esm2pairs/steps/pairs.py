"""pairs (dataset_segment_pairs): `train_pairs.csv`, `val_pairs.csv`, `test_pairs.csv`
(`brc_a, brc_b, label`, with each protein's function) from the embedded proteins.

Isolates are split (seeded) so no isolate is in two splits. A positive pair joins two
proteins of different selected functions of one isolate; a negative pair joins a protein
with the same-function protein of another isolate of the same split (never with an
identical sequence, which would be a positive in disguise)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from esm2pairs.config import Config
from esm2pairs.data.proteins import SEQ_COL, read_final
from esm2pairs.paths import PAIR_FILES, Layout
from esm2pairs.steps.embed import master_cache
from pipekit.atomic import replacing_uri
from pipekit.errors import InputDataError
from pipekit.uri import open_uri, uri_exists

log = logging.getLogger(__name__)

PAIR_COLUMNS = ["brc_a", "brc_b", "label", "func_a", "func_b"]


@dataclass(frozen=True)
class PairsResult:
    pairs_dir: str
    counts: dict[str, dict[str, int]]  # split -> {"pos": n, "neg": n, "isolates": n}
    n_missing_embeddings: int


def read_isolates(uri: str) -> list[str]:
    with open_uri(uri, "r") as fh:
        return [line.strip() for line in fh if line.strip()]


def split_isolates(isolates: list[str], cfg: Config) -> dict[str, list[str]]:
    rng = np.random.default_rng(cfg.sampling.random_seed)
    order = sorted(isolates)
    rng.shuffle(order)
    n = len(order)
    n_train = round(cfg.dataset.train_frac * n)
    n_val = round(cfg.dataset.val_frac * n)
    return {
        "train": order[:n_train],
        "val": order[n_train : n_train + n_val],
        "test": order[n_train + n_val :],
    }


def make_pairs(df: pd.DataFrame, ratio: float, rng: np.random.Generator) -> pd.DataFrame:
    """Positives within isolates, `ratio` negatives per positive across isolates, each
    positive followed by its negatives.

    One protein per (isolate, function). A positive (a, b) joins two of an isolate's
    proteins, a's function before b's; its negatives pair a with other isolates' proteins of
    b's function whose sequence differs from b's (b's own isolate has only b there), drawn
    uniformly without replacement: int(ratio) of them, one more with probability
    ratio - int(ratio), all there are when fewer. Vectorized (time linear in the proteins, up
    to a sort): each function's proteins are laid out grouped by sequence, so the valid ones
    for b are the function's block minus one contiguous run, and a draw in
    [0, n_valid) maps past that run with one comparison."""
    cols = ["assembly_id", "function", "brc_fea_id", SEQ_COL]
    first = df.drop_duplicates(["assembly_id", "function"])[cols]
    # the pool: every function's proteins, grouped by sequence within the function
    pool = first.sort_values(["function", SEQ_COL], kind="stable").reset_index(drop=True)
    func_code, funcs = pd.factorize(pool["function"])  # sorted: codes ascend along the pool
    seq_code = pool.groupby(["function", SEQ_COL], sort=False).ngroup().to_numpy()
    n_f = np.bincount(func_code)
    f_start = np.cumsum(n_f) - n_f
    run_start = pd.Series(np.arange(len(pool))).groupby(seq_code).transform("min").to_numpy()
    run_len = np.bincount(seq_code)[seq_code]

    pos = first.merge(first, on="assembly_id", suffixes=("_a", "_b"))
    pos = pos[pos["function_a"] < pos["function_b"]]
    pos = pos.sort_values(["assembly_id", "function_a", "function_b"], kind="stable")
    places = pool[cols[:2]].rename(columns={"function": "function_b"})
    places["at_b"] = np.arange(len(pool))  # b's place in the pool
    pos = pos.merge(places, on=["assembly_id", "function_b"], how="left")
    at_b = pos["at_b"].to_numpy()
    f_b = func_code[at_b]
    lo = run_start[at_b] - f_start[f_b]  # b's sequence run within its function's block
    width = run_len[at_b]
    n_valid = n_f[f_b] - width
    whole = int(ratio)
    k = np.minimum(n_valid, whole + (rng.random(len(pos)) < ratio - whole)).astype(np.int64)

    owner = np.repeat(np.arange(len(pos)), k)  # the positive each negative belongs to
    draw = np.floor(rng.random(len(owner)) * n_valid[owner]).astype(np.int64)
    while True:  # redraw repeats within one positive: sampling without replacement
        order = np.lexsort((draw, owner))
        same = np.zeros(len(owner), bool)
        same[order[1:]] = (owner[order[1:]] == owner[order[:-1]]) & (
            draw[order[1:]] == draw[order[:-1]]
        )
        if not same.any():
            break
        draw[same] = np.floor(rng.random(int(same.sum())) * n_valid[owner[same]]).astype(np.int64)
    skip = draw >= lo[owner]
    neg_at = f_start[f_b[owner]] + draw + np.where(skip, width[owner], 0)

    pos_rows = pd.DataFrame(
        {
            "brc_a": pos["brc_fea_id_a"].to_numpy(),
            "brc_b": pos["brc_fea_id_b"].to_numpy(),
            "label": 1,
            "func_a": pos["function_a"].to_numpy(),
            "func_b": pos["function_b"].to_numpy(),
            "_owner": np.arange(len(pos)),
            "_rank": 0,
        }
    )
    neg_rows = pd.DataFrame(
        {
            "brc_a": pos["brc_fea_id_a"].to_numpy()[owner],
            "brc_b": pool["brc_fea_id"].to_numpy()[neg_at],
            "label": 0,
            "func_a": pos["function_a"].to_numpy()[owner],
            "func_b": funcs[f_b[owner]],
            "_owner": owner,
            "_rank": 1,
        }
    )
    out = pd.concat([pos_rows, neg_rows], ignore_index=True)
    out = out.sort_values(["_owner", "_rank"], kind="stable")
    return out[PAIR_COLUMNS].reset_index(drop=True)


def run(cfg: Config) -> PairsResult:
    layout = Layout.from_config(cfg)
    sampled = uri_exists(layout.sampled_isolates)  # the isolates the embed step used
    if not sampled and cfg.sampling.max_isolates_to_process is not None:
        raise InputDataError(
            f"{layout.sampled_isolates} not found: run the embed step with this sampling first"
        )
    df = read_final(layout.input_file)
    if sampled:
        df = df[df["assembly_id"].isin(set(read_isolates(layout.sampled_isolates)))]
    selected = cfg.dataset.selected_functions
    if selected:
        unknown = sorted(set(selected) - set(df["function"]))
        if unknown:
            raise InputDataError(
                f"dataset.selected_functions {unknown} match no protein; functions present: "
                f"{sorted(df['function'].unique())[:20]}"
            )
        df = df[df["function"].isin(selected)]
    # proteins the cache lacks (failed to embed) cannot be paired
    indexed = set(master_cache(layout).read_index()["brc_fea_id"])
    missing = ~df["brc_fea_id"].isin(indexed)
    if missing.any():
        log.warning(
            "%d protein(s) have no embedding in the cache: left out of pairs", missing.sum()
        )
    df = df[~missing]
    splits = split_isolates(sorted(df["assembly_id"].unique()), cfg)
    rng = np.random.default_rng(cfg.sampling.random_seed)
    counts = {}
    for split, isolates in splits.items():
        pairs = make_pairs(
            df[df["assembly_id"].isin(set(isolates))], cfg.dataset.neg_to_pos_ratio, rng
        )
        if pairs.empty or pairs["label"].nunique() < 2:
            raise InputDataError(
                f"the {split} split ({len(isolates)} isolates) has no positive and negative "
                "pairs: more isolates, or two or more selected functions, are needed"
            )
        with replacing_uri(layout.pairs(split), "w") as fh:
            pairs.to_csv(fh, index=False)
        pos = int(pairs["label"].sum())
        counts[split] = {"pos": pos, "neg": len(pairs) - pos, "isolates": len(isolates)}
    log.info("pairs -> %s: %s", layout.pairs_dir, counts)
    return PairsResult(layout.pairs_dir, counts, int(missing.sum()))


def read_pairs(layout: Layout, split: str) -> pd.DataFrame:
    uri = layout.pairs(split)
    if not uri_exists(uri):
        raise InputDataError(f"{PAIR_FILES[split]} not found at {uri}: run the pairs step first")
    with open_uri(uri, "rb") as fh:
        df = pd.read_csv(fh, dtype={"brc_a": str, "brc_b": str})
    missing = [c for c in ("brc_a", "brc_b", "label") if c not in df.columns]
    if missing:
        raise InputDataError(f"{uri} lacks column(s) {missing}")
    return df
