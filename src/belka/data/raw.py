"""The BELKA inputs as the competition ships them, read in bounded batches.

`train.parquet`: `id, buildingblock1_smiles, buildingblock2_smiles, buildingblock3_smiles,
molecule_smiles, protein_name, binds`, one row per molecule and protein; `test.parquet`
the same without `binds`; the extra labelled CSV has one molecule per row and a read count
for one protein (`extra.*` names its columns)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from belka import PROTEINS
from belka.config.schema import ExtraConfig
from pipekit.errors import InputDataError
from pipekit.uri import open_uri, uri_exists

log = logging.getLogger(__name__)

BLOCKS = ("buildingblock1_smiles", "buildingblock2_smiles", "buildingblock3_smiles")
TEST_COLUMNS = ("id", *BLOCKS, "molecule_smiles", "protein_name")
TRAIN_COLUMNS = (*TEST_COLUMNS, "binds")
SOURCE_TRAIN, SOURCE_TEST, SOURCE_EXTRA = 0, 1, 2


@dataclass
class Counts:
    rows: int = 0
    bad_protein: int = 0
    bad_label: int = 0
    empty_smiles: int = 0

    @property
    def skipped(self) -> int:
        return self.bad_protein + self.bad_label + self.empty_smiles


def _open_parquet(uri: str, columns: tuple[str, ...]) -> pq.ParquetFile:
    if not uri_exists(uri):
        raise InputDataError(f"{uri}: no such file (data.root holds the BELKA inputs)")
    try:
        pf = pq.ParquetFile(open_uri(uri))
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputDataError(f"{uri}: not a parquet file ({exc})") from None
    missing = [c for c in columns if c not in pf.schema_arrow.names]
    if missing:
        raise InputDataError(f"{uri}: missing columns {missing} (has {pf.schema_arrow.names})")
    if pf.metadata.num_rows == 0:
        raise InputDataError(f"{uri}: no rows")
    return pf


def parquet_rows(uri: str, labelled: bool) -> int:
    return _open_parquet(uri, TRAIN_COLUMNS if labelled else TEST_COLUMNS).metadata.num_rows


def protein_index(names: pd.Series) -> pd.Series:
    """Each protein name's index in PROTEINS; NaN for a protein outside them."""
    return names.map({p: i for i, p in enumerate(PROTEINS)})


def _clean(df: pd.DataFrame, counts: Counts, uri: str) -> pd.DataFrame:
    """Rows of known proteins with a label of 0/1 (-1 for test rows) and a SMILES."""
    protein = protein_index(df["protein_name"])
    ok = protein.notna()
    if (~ok).any():
        counts.bad_protein += int((~ok).sum())
        log.warning(
            "%s: %d rows name a protein outside %s (e.g. %r): skipped",
            uri,
            int((~ok).sum()),
            PROTEINS,
            df.loc[~ok, "protein_name"].iloc[0],
        )
    binds = pd.to_numeric(df["binds"], errors="coerce") if "binds" in df else None
    if binds is not None:
        good = binds.isin([0, 1])
        counts.bad_label += int((ok & ~good).sum())
        ok &= good
    smiles = df["molecule_smiles"]
    has = smiles.notna() & (smiles.astype(str).str.len() > 0)
    counts.empty_smiles += int((ok & ~has).sum())
    ok &= has
    out = pd.DataFrame(
        {
            "molecule_smiles": smiles[ok].astype(str).str.replace("[Dy]", "[H]", regex=False),
            **{b: df.loc[ok, b].astype("string") for b in BLOCKS},
            "protein": protein[ok].astype(np.int8),
            "binds": (binds[ok].astype(np.int8) if binds is not None else np.int8(-1)),
            "id": df.loc[ok, "id"].astype(np.int64),
        }
    )
    return out


def parquet_batches(
    uri: str, labelled: bool, batch_rows: int, counts: Counts
) -> Iterator[pd.DataFrame]:
    """Cleaned rows of train.parquet (labelled) or test.parquet, a batch at a time."""
    columns = TRAIN_COLUMNS if labelled else TEST_COLUMNS
    pf = _open_parquet(uri, columns)
    for batch in pf.iter_batches(batch_size=batch_rows, columns=list(columns)):
        df = batch.to_pandas()
        counts.rows += len(df)
        yield _clean(df, counts, uri)


def extra_batches(
    uri: str, extra: ExtraConfig, batch_rows: int, counts: Counts
) -> Iterator[pd.DataFrame]:
    """The extra CSV as rows of the train layout: one protein, no building blocks."""
    cols = [extra.smiles_column, extra.label_column]
    try:
        reader = pd.read_csv(open_uri(uri, "r"), usecols=cols, chunksize=batch_rows)
        for chunk in reader:
            counts.rows += len(chunk)
            count = pd.to_numeric(chunk[extra.label_column], errors="coerce")
            df = pd.DataFrame(
                {
                    "id": np.full(len(chunk), -1, dtype=np.int64),
                    **{b: pd.Series([None] * len(chunk), dtype="string") for b in BLOCKS},
                    "molecule_smiles": chunk[extra.smiles_column],
                    "protein_name": extra.protein,
                    "binds": np.where(
                        count.isna(), np.nan, (count >= extra.min_count).astype(float)
                    ),
                }
            )
            yield _clean(df, counts, uri)
    except ValueError as exc:  # usecols names a column the file lacks
        if "Usecols" in str(exc) or "columns expected" in str(exc):
            raise InputDataError(
                f"{uri}: missing columns {cols} (extra.smiles_column, extra.label_column)"
            ) from None
        raise
    except pd.errors.EmptyDataError:
        raise InputDataError(f"{uri}: empty file") from None
