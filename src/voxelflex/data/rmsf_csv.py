"""The aggregated RMSF CSV: one row per residue per temperature."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from pipekit.errors import InputDataError
from pipekit.uri import open_uri

log = logging.getLogger(__name__)

REQUIRED = ("domain_id", "resid", "resname", "temperature_feature", "target_rmsf")
OPTIONAL = ("relative_accessibility", "dssp", "secondary_structure_encoded")
# where a domain's voxels have several chains, a `chain_id` column keys residues by chain too
CHAIN = "chain_id"


def _not_text(uri: str, head: bytes) -> str | None:
    """Why the file's first bytes are not a UTF-8 CSV, or None."""
    if not head.strip():
        return "it is empty"
    if head[:2] in (b"\xff\xfe", b"\xfe\xff") or (len(head) > 1 and head[1:2] == b"\x00"):
        return "it is UTF-16 text: save it as UTF-8 (CSV UTF-8 in a spreadsheet)"
    if b"\x00" in head:
        return "it is binary, not text"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a character cut at the end of the sample
            return f"it is not UTF-8 text (byte {exc.start}): save it as UTF-8"
    return None


def read_rmsf_csv(uri: str, threads: bool = True) -> pd.DataFrame:
    """Required and optional contract columns with checked types; rows are not yet cleaned.
    Parsed by pyarrow outside the GIL (a local file by its path, no Python in the reads), on
    one thread where `threads` is off (another thread has work for the other core)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from pipekit.uri import is_local, local_path

    with open_uri(uri, "rb") as fh:
        why = _not_text(uri, fh.read(4096))
        if why:
            raise InputDataError(f"RMSF CSV {uri} cannot be read: {why}")
        fh.seek(0)
        header = pd.read_csv(fh, nrows=0).columns
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise InputDataError(
                f"RMSF CSV {uri} lacks required column(s) {', '.join(missing)}; "
                f"it has: {', '.join(map(str, header))}"
            )
        fh.seek(0)
        usecols = [c for c in (*REQUIRED, *OPTIONAL, CHAIN) if c in header]
        text = {c: pa.string() for c in ("domain_id", "resname", "dssp", CHAIN) if c in usecols}
        source = local_path(uri) if is_local(uri) else fh
        table = pacsv.read_csv(
            source,
            read_options=pacsv.ReadOptions(use_threads=threads),
            convert_options=pacsv.ConvertOptions(include_columns=usecols, column_types=text),
        )
    df = table.to_pandas()
    for col in ("resid", "temperature_feature", "target_rmsf"):
        converted = pd.to_numeric(df[col], errors="coerce")
        bad = converted.isna() & df[col].notna()
        if col == "resid" and bad.any():
            example = df.loc[bad, col].iloc[0]
            raise InputDataError(
                f"RMSF CSV {uri}: column 'resid' must be integer, found {example!r}"
            )
        df[col] = converted
    if df["resid"].isna().any():
        raise InputDataError(f"RMSF CSV {uri}: column 'resid' has empty values")
    if (df["resid"] != np.floor(df["resid"])).any():
        raise InputDataError(f"RMSF CSV {uri}: column 'resid' must hold whole numbers")
    df["resid"] = df["resid"].astype(np.int64)
    df["domain_id"] = df["domain_id"].astype(str)
    if CHAIN in df.columns:
        df[CHAIN] = df[CHAIN].astype(str)
    df["temperature_feature"] = df["temperature_feature"].astype(np.float64)
    df["target_rmsf"] = df["target_rmsf"].astype(np.float64)
    return df


def clean_rmsf_rows(df: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """Drop rows no model can learn from; return the counts of each kind dropped."""
    counts: dict[str, int] = {}
    target = df["target_rmsf"].to_numpy()
    temp = df["temperature_feature"].to_numpy()
    bad_target = ~np.isfinite(target) | (target < 0)
    bad_temp = ~np.isfinite(temp)
    counts["non_finite_or_negative_target"] = int(bad_target.sum())
    counts["non_finite_temperature"] = int((bad_temp & ~bad_target).sum())
    df = df.loc[~(bad_target | bad_temp)]
    keys = ["domain_id", *([CHAIN] if CHAIN in df.columns else []), "resid", "temperature_feature"]
    dup = _repeated(df, keys)
    counts["duplicate_rows"] = int(dup.sum())
    df = df.loc[~dup].reset_index(drop=True)
    return df, counts


def _repeated(df: pd.DataFrame, keys: list[str]) -> np.ndarray:
    """Rows whose `keys` an earlier row has, by the order of integer codes (a hash of 3.7M
    string-keyed rows costs several times more; a CSV in order needs no sort at all)."""
    from voxelflex.data.order import lex_order

    cols = [
        np.asarray(pd.factorize(df[k])[0] if df[k].dtype.kind not in "if" else df[k]) for k in keys
    ]
    order = lex_order(cols)
    ranked = cols if order is None else [c[order] for c in cols]
    same = np.zeros(len(df), dtype=bool)
    if len(df) > 1:
        same[1:] = True
        for col in ranked:
            same[1:] &= col[1:] == col[:-1]
    if order is None:
        return same
    out = np.zeros(len(df), dtype=bool)
    out[order] = same
    return out
