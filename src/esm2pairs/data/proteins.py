"""Protein tables (`protein_final.csv` and the raw table preprocess reads): reading, the
column contract, duplicate IDs, sequence checks."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from pipekit.errors import InputDataError, not_found
from pipekit.uri import open_uri, uri_exists

log = logging.getLogger(__name__)

SEQ_COL = "esm2_ready_seq"
FINAL_REQUIRED = ("brc_fea_id", SEQ_COL, "length", "assembly_id")
RAW_REQUIRED = ("brc_fea_id", "assembly_id", "prot_seq", "function")
STANDARD_AMINO_ACIDS = frozenset("ACDEFGHIKLMNPQRSTVWY")


def read_table(uri: str, what: str, hint: str | None = None) -> pd.DataFrame:
    """A CSV or parquet table (by suffix), IDs read as strings; `hint`, what sets the path or
    makes the file, is said where it is missing."""
    if not uri_exists(uri):
        raise not_found(f"{what} not found: {uri}", hint)
    try:
        with open_uri(uri, "rb") as fh:
            if uri.endswith(".parquet"):
                df = pd.read_parquet(fh)
            else:
                df = pd.read_csv(fh, dtype={"brc_fea_id": str, "assembly_id": str})
    except (ValueError, UnicodeDecodeError, OSError) as exc:
        raise InputDataError(f"cannot read {what} {uri}: {exc}") from None
    if df.empty:
        raise InputDataError(f"{what} {uri} has no rows")
    return df


def require_columns(df: pd.DataFrame, required: tuple[str, ...], uri: str) -> None:
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise InputDataError(f"{uri} lacks required column(s) {missing}; it has {list(df.columns)}")


def require_unique_ids(df: pd.DataFrame, uri: str) -> None:
    """The cache index maps each brc_fea_id to one row: an ID twice would silently keep one."""
    dup = df["brc_fea_id"][df["brc_fea_id"].duplicated(keep=False)].unique()
    if len(dup):
        shown = ", ".join(map(str, dup[:10])) + (" ..." if len(dup) > 10 else "")
        raise InputDataError(f"{uri}: {len(dup)} brc_fea_id value(s) occur more than once: {shown}")


def clean_sequence(seq: object) -> str:
    """Upper case, no whitespace, gaps or terminal stop codon (`*`)."""
    if not isinstance(seq, str):
        return ""
    s = "".join(seq.split()).upper().replace("-", "")
    return s.rstrip("*")


def invalid_mask(seqs: pd.Series) -> np.ndarray:
    """Sequences with a residue outside the 20 standard amino acids (ESM-2 reads them as
    unknown tokens: kept, but worth a warning)."""
    return np.array([bool(set(s) - STANDARD_AMINO_ACIDS) for s in seqs], dtype=bool)


def report_sequences(seqs: pd.Series, max_residues: int) -> tuple[int, int]:
    """Warn about (and count) non-standard residues and sequences over `max_residues`."""
    n_invalid = int(invalid_mask(seqs).sum())
    n_long = int((seqs.str.len() > max_residues).sum())
    if n_invalid:
        log.warning("%d sequence(s) hold non-standard residues (read as unknown tokens)", n_invalid)
    if n_long:
        log.warning(
            "%d sequence(s) are longer than %d residues: ESM-2 sees their first %d",
            n_long,
            max_residues,
            max_residues,
        )
    return n_invalid, n_long


def read_final(uri: str) -> pd.DataFrame:
    """`protein_final.csv`, checked: required columns, unique IDs, sequences as strings."""
    df = read_table(uri, "protein table", "run preprocess first, or pass --input_file")
    require_columns(df, FINAL_REQUIRED, uri)
    df["brc_fea_id"] = df["brc_fea_id"].astype(str)
    df["assembly_id"] = df["assembly_id"].astype(str)
    require_unique_ids(df, uri)
    df[SEQ_COL] = df[SEQ_COL].fillna("").astype(str)
    return df
