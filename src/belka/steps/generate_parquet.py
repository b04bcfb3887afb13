"""generate_parquet: train + test + extra rows -> `belka.parquet`, one row per molecule.

Out of core, the plan's memory-safe path as the only path: pass 1 streams every input in
batches into temporary bucket files by a hash of the molecule (so one molecule's rows meet
in one bucket) and collects the building blocks; pass 2 pivots one bucket at a time.
Peak memory follows `features.rows_per_bucket`, not the input size.

Columns: `mol_id`, `molecule_smiles` (the `[Dy]` linker as `[H]`), the three building
blocks, `binds_<protein>` (null where unmeasured), `id_<protein>` (the input row ids, for
the submission), `subset` (0 train, 1 validation, 2 test) and `shared_blocks`. Validation
is the competition's split (Leash Bio's non-shared test molecules share no building block
with training): every labelled molecule with a held-out block leaves training, and a share
of the others is validated too. `shared_blocks`: true when all three blocks occur in
training molecules, false when none does (non-shared), null when only some do or the
molecule has no blocks (neither group)."""

from __future__ import annotations

import json
import logging
import math
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from belka import PROTEINS
from belka.config import Config
from belka.data.raw import (
    BLOCKS,
    SOURCE_EXTRA,
    SOURCE_TEST,
    SOURCE_TRAIN,
    Counts,
    extra_batches,
    parquet_batches,
    parquet_rows,
    protein_index,
)
from belka.paths import Layout
from pipekit.atomic import replacing_path, replacing_uri
from pipekit.errors import InputDataError
from pipekit.faults import crashpoint
from pipekit.progress import progress
from pipekit.uri import apply_storage_options, join_uri, open_uri, require_file, uri_exists

log = logging.getLogger(__name__)

BATCH_ROWS = 200_000
SUBSET_TRAIN, SUBSET_VAL, SUBSET_TEST = 0, 1, 2
BUCKET_SCHEMA = pa.schema(
    [
        ("molecule_smiles", pa.string()),
        *[(b, pa.string()) for b in BLOCKS],
        ("protein", pa.int8()),
        ("binds", pa.int8()),
        ("id", pa.int64()),
        ("source", pa.int8()),
    ]
)
OUT_SCHEMA = pa.schema(
    [
        ("mol_id", pa.int64()),
        ("molecule_smiles", pa.string()),
        *[(b, pa.string()) for b in BLOCKS],
        *[(f"binds_{p}", pa.int8()) for p in PROTEINS],
        *[(f"id_{p}", pa.int64()) for p in PROTEINS],
        ("subset", pa.int8()),
        ("shared_blocks", pa.bool_()),
    ]
)


@dataclass(frozen=True)
class GenerateResult:
    parquet: str
    molecules: int
    by_subset: dict[str, int]
    input_rows: dict[str, int]
    skipped_rows: dict[str, dict[str, int]]  # per input: its counts of rows skipped and why
    heldout_blocks: int
    buckets: int
    # validation molecules per group: shared, non_shared, and neither (blocks mixed or unknown)
    validation_groups: dict[str, int]


TEST_IDS = "test_ids.parquet"


def test_ids_uri(parquet_uri: str) -> str:
    """Beside belka.parquet: every raw test row's (id, protein index or -1)."""
    return join_uri(parquet_uri.rsplit("/", 1)[0], TEST_IDS)


def _write_test_ids(test_uri: str, parquet_uri: str, kept: np.ndarray) -> None:
    """Every id of the raw test file with its protein and whether its row was kept (`kept`:
    the ids of the test rows that reached the molecule table), so make_submission can check
    that each reaches submission.csv exactly once (two columns: one cheap pass)."""
    pf = pq.ParquetFile(open_uri(test_uri))
    parts = []
    for b in pf.iter_batches(batch_size=BATCH_ROWS, columns=["id", "protein_name"]):
        df = b.to_pandas()
        prot = protein_index(df["protein_name"]).fillna(-1).astype(np.int8)
        parts.append(pd.DataFrame({"id": df["id"].astype(np.int64), "protein": prot}))
    ids = pd.concat(parts, ignore_index=True).drop_duplicates("id")
    ids["kept"] = ids["id"].isin(kept)
    with replacing_path(test_ids_uri(parquet_uri)) as local:
        ids.to_parquet(local, index=False)


def _hash(values: pd.Series) -> np.ndarray:
    # pandas' hash is keyed by a fixed constant: stable across runs and machines
    return pd.util.hash_pandas_object(values, index=False).to_numpy()


def _bucketize(cfg: Config, layout: Layout, tmp: Path) -> tuple[int, dict, dict, set[str]]:
    """Pass 1: every input row into bucket files; returns (buckets, rows, skips, blocks of
    labelled molecules)."""
    train_uri, test_uri = layout.raw(cfg.data.train_file), layout.raw(cfg.data.test_file)
    total = parquet_rows(train_uri, True) + parquet_rows(test_uri, False)
    n_buckets = max(1, math.ceil(total / cfg.features.rows_per_bucket))
    writers = [
        pq.ParquetWriter(tmp / f"bucket-{k}.parquet", BUCKET_SCHEMA) for k in range(n_buckets)
    ]
    sources: list[tuple[str, str, object]] = [
        ("train", train_uri, lambda c: parquet_batches(train_uri, True, BATCH_ROWS, c)),
        ("test", test_uri, lambda c: parquet_batches(test_uri, False, BATCH_ROWS, c)),
    ]
    extra = cfg.data.extra_file
    if extra:
        extra_uri = layout.raw(extra)
        if uri_exists(extra_uri):
            sources.append(
                ("extra", extra_uri, lambda c: extra_batches(extra_uri, cfg.extra, BATCH_ROWS, c))
            )
        else:
            log.warning("%s: no extra labelled data there (data.extra_file); going on", extra_uri)
    code = {"train": SOURCE_TRAIN, "test": SOURCE_TEST, "extra": SOURCE_EXTRA}
    rows, skips, blocks = {}, {}, set()
    try:
        for name, uri, batches in sources:
            counts = Counts()
            for df in progress(batches(counts), desc=f"read {name}", unit="batch"):  # type: ignore[operator]
                df["source"] = np.int8(code[name])
                if name == "train":
                    for b in BLOCKS:
                        blocks.update(df[b].dropna().unique().tolist())
                which = _hash(df["molecule_smiles"]) % n_buckets
                for k in np.unique(which):
                    part = df[which == k]
                    writers[k].write_table(
                        pa.Table.from_pandas(part, schema=BUCKET_SCHEMA, preserve_index=False)
                    )
            if counts.rows == 0:
                raise InputDataError(f"{uri}: no rows")
            rows[name] = counts.rows
            skips[name] = asdict(counts) | {"skipped": counts.skipped}
            if counts.skipped:
                log.warning(
                    "%s: %d of %d rows skipped (%s)",
                    uri,
                    counts.skipped,
                    counts.rows,
                    asdict(counts),
                )
    finally:
        for w in writers:
            w.close()
    return n_buckets, rows, skips, blocks


def _heldout(blocks: set[str], cfg: Config, layout: Layout) -> set[str]:
    """`validation.heldout_block_fraction` of the blocks (a seeded draw), and the blocks the
    `validation.heldout_blocks_file` lists."""
    v = cfg.validation
    ordered = sorted(blocks)
    n = round(len(ordered) * v.heldout_block_fraction)
    pick = np.random.default_rng(v.seed).choice(len(ordered), size=n, replace=False)
    held = {ordered[i] for i in pick}
    if v.heldout_blocks_file:
        uri = require_file(layout.raw(v.heldout_blocks_file), "validation.heldout_blocks_file")
        with open_uri(uri, "rt") as fh:
            listed = {line.strip() for line in fh if line.strip()}
        unknown = listed - blocks
        if unknown:
            log.warning(
                "%s: %d of its %d blocks occur in no molecule", uri, len(unknown), len(listed)
            )
        held |= listed & blocks
    return held


def _pivot(bucket: pd.DataFrame) -> pd.DataFrame:
    """One row per labelled molecule (labels and ids per protein; a label measured twice:
    max), and one row per test occurrence: a molecule listed in test.parquet is a test row
    even when training also measured it, and one listed twice for a protein under two ids
    gets a second test row, so every test id has a row of its own for the submission."""
    key = "molecule_smiles"
    is_test = bucket["source"].to_numpy() == SOURCE_TEST
    rows = [_pivot_labelled(bucket[~is_test])] if (~is_test).any() else []
    test = bucket[is_test & (bucket["id"].to_numpy() >= 0)]
    if len(test):
        test = test.sort_values([key, "protein", "id"], kind="stable")
        test = test.assign(occurrence=test.groupby([key, "protein"]).cumcount())
        ids = test.pivot_table(index=[key, "occurrence"], columns="protein", values="id")
        first = test.groupby([key, "occurrence"], sort=True).agg({b: "first" for b in BLOCKS})
        out = first.assign(source=np.int8(SOURCE_TEST))
        for i, p in enumerate(PROTEINS):
            out[f"binds_{p}"] = np.nan
            out[f"id_{p}"] = ids.get(i, np.nan)
        rows.append(out.reset_index().drop(columns="occurrence"))
    out = pd.concat(rows, ignore_index=True).sort_values([key, "source"], kind="stable")
    return out.astype(
        {**{f"binds_{p}": "Int8" for p in PROTEINS}, **{f"id_{p}": "Int64" for p in PROTEINS}}
    ).reset_index(drop=True)


def _pivot_labelled(bucket: pd.DataFrame) -> pd.DataFrame:
    key = "molecule_smiles"
    labelled = bucket[bucket["binds"] >= 0]
    binds = labelled.pivot_table(index=key, columns="protein", values="binds", aggfunc="max")
    ids = bucket[bucket["id"] >= 0].pivot_table(
        index=key, columns="protein", values="id", aggfunc="min"
    )
    out = bucket.groupby(key, sort=True).agg({**{b: "first" for b in BLOCKS}, "source": "min"})
    for i, p in enumerate(PROTEINS):
        out[f"binds_{p}"] = binds.get(i, np.nan)
        out[f"id_{p}"] = ids.get(i, np.nan)
    return out.reset_index()


def _subsets(mols: pd.DataFrame, heldout: set[str], cfg: Config) -> np.ndarray:
    """0 train, 1 validation, 2 test for one row per molecule (blocks, source, SMILES)."""
    has_blocks = mols[list(BLOCKS)].notna().all(axis=1).to_numpy()
    held = np.zeros(len(mols), dtype=bool)
    for b in BLOCKS:
        held |= mols[b].isin(heldout).to_numpy()
    labelled = mols["source"].to_numpy() != SOURCE_TEST
    # a stable per-molecule draw: the same molecules are validated on every run
    draw = (_hash(mols["molecule_smiles"]) % 1_000_003) / 1_000_003
    val = labelled & (held | (has_blocks & (draw < cfg.validation.shared_fraction)))
    subset = np.where(labelled, SUBSET_TRAIN, SUBSET_TEST)
    subset[val] = SUBSET_VAL
    return subset.astype(np.int8)


def _training_blocks(tmp: Path, n_buckets: int, heldout: set[str], cfg: Config) -> set[str]:
    """The blocks of the molecules that end up in training (a block can be in neither the
    held-out set nor any training molecule: all its molecules were drawn for validation)."""
    blocks: set[str] = set()
    for k in range(n_buckets):
        cols = ["molecule_smiles", *BLOCKS, "source"]
        part = pq.read_table(tmp / f"bucket-{k}.parquet", columns=cols).to_pandas()
        part = part.groupby("molecule_smiles", sort=False).agg("min").reset_index()
        train = part[_subsets(part, heldout, cfg) == SUBSET_TRAIN]
        for b in BLOCKS:
            blocks.update(train[b].dropna().unique().tolist())
    return blocks


def _assign(mols: pd.DataFrame, heldout: set[str], train_blocks: set[str], cfg: Config) -> None:
    """`subset`, and `shared_blocks` as the competition split its test set: true when every
    block of the molecule occurs in training molecules (shared), false when none does
    (non-shared), null when only some do or the blocks are unknown (neither group)."""
    has_blocks = mols[list(BLOCKS)].notna().all(axis=1).to_numpy()
    seen = mols[list(BLOCKS)].isin(train_blocks).sum(axis=1).to_numpy()
    flag = pd.array(seen == len(BLOCKS), dtype="boolean")
    flag[((seen > 0) & (seen < len(BLOCKS))) | ~has_blocks] = pd.NA  # mixed, or no blocks
    mols["subset"] = _subsets(mols, heldout, cfg)
    mols["shared_blocks"] = flag


def _count_groups(groups: dict[str, int], mols: pd.DataFrame) -> None:
    flag = mols.loc[mols["subset"] == SUBSET_VAL, "shared_blocks"]
    groups["shared"] += int((flag == True).sum())  # noqa: E712 (a nullable column)
    groups["non_shared"] += int((flag == False).sum())  # noqa: E712
    groups["neither"] += int(flag.isna().sum())


def run(cfg: Config, layout: Layout | None = None) -> GenerateResult:
    apply_storage_options(cfg.data.storage_options)
    layout = layout or Layout.of(cfg)
    tmp = Path(tempfile.mkdtemp(prefix="belka-buckets-"))
    try:
        n_buckets, rows, skips, blocks = _bucketize(cfg, layout, tmp)
        crashpoint("generate_parquet.bucketed")
        heldout = _heldout(blocks, cfg, layout)
        train_blocks = _training_blocks(tmp, n_buckets, heldout, cfg)
        log.info("%d building blocks in training molecules, %d held out", len(blocks), len(heldout))
        by_subset = {"train": 0, "validation": 0, "test": 0}
        groups = {"shared": 0, "non_shared": 0, "neither": 0}
        next_id = 0
        test_ids: list[np.ndarray] = []
        with replacing_path(layout.parquet) as local:
            with pq.ParquetWriter(local, OUT_SCHEMA, compression="zstd") as writer:
                for k in progress(range(n_buckets), desc="molecules", unit="bucket"):
                    bucket = pq.read_table(tmp / f"bucket-{k}.parquet").to_pandas()
                    if bucket.empty:
                        continue
                    test_ids.append(bucket.loc[bucket["source"] == SOURCE_TEST, "id"].to_numpy())
                    mols = _pivot(bucket)
                    _assign(mols, heldout, train_blocks, cfg)
                    mols.insert(0, "mol_id", np.arange(next_id, next_id + len(mols)))
                    next_id += len(mols)
                    for name, code in zip(by_subset, (0, 1, 2), strict=True):
                        by_subset[name] += int((mols["subset"] == code).sum())
                    _count_groups(groups, mols)
                    writer.write_table(
                        pa.Table.from_pandas(mols, schema=OUT_SCHEMA, preserve_index=False)
                    )
            kept = np.concatenate(test_ids) if test_ids else np.zeros(0, np.int64)
            _write_test_ids(layout.raw(cfg.data.test_file), layout.parquet, kept)
            crashpoint("generate_parquet.written")
        if next_id == 0:
            raise InputDataError("generate_parquet: no molecule left after skipping bad rows")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    res = GenerateResult(
        layout.parquet, next_id, by_subset, rows, skips, len(heldout), n_buckets, groups
    )
    with replacing_uri(layout.out("generate_parquet_report.json"), "w") as fh:
        json.dump(asdict(res), fh, indent=2)
    return res
