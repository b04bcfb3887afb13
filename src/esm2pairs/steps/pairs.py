"""pairs (dataset_segment_pairs): `train_pairs.csv`, `val_pairs.csv`, `test_pairs.csv`
(`brc_a, brc_b, label`, with each protein's function) from the embedded proteins.

Isolates are split (seeded) so no isolate is in two splits. A positive pair joins two
proteins of different selected functions of one isolate; a negative pair joins a protein
with the same-function protein of another isolate of the same split (never with an
identical sequence, which would be a positive in disguise)."""

from __future__ import annotations

import itertools
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
    """Positives within isolates, `ratio` negatives per positive across isolates."""
    first = df.drop_duplicates(["assembly_id", "function"])  # one protein per function
    by_func = {f: g.reset_index(drop=True) for f, g in first.groupby("function")}
    rows = []
    for _, iso in first.groupby("assembly_id", sort=True):
        recs = iso.sort_values("function").to_dict("records")
        for a, b in itertools.combinations(recs, 2):
            rows.append((a["brc_fea_id"], b["brc_fea_id"], 1, a["function"], b["function"]))
            others = by_func[b["function"]]
            others = others[
                (others["assembly_id"] != a["assembly_id"]) & (others[SEQ_COL] != b[SEQ_COL])
            ]
            n_neg = min(len(others), int(ratio) + int(rng.random() < ratio - int(ratio)))
            for j in rng.choice(len(others), n_neg, replace=False) if n_neg else []:
                rows.append(
                    (
                        a["brc_fea_id"],
                        others.at[others.index[j], "brc_fea_id"],
                        0,
                        a["function"],
                        b["function"],
                    )
                )
    return pd.DataFrame(rows, columns=PAIR_COLUMNS)


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
