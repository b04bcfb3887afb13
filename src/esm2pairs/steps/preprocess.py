"""preprocess: the raw protein table -> `protein_final.csv` with `esm2_ready_seq` and
`length` (cleaned sequences), checked against the column contract."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pandas as pd

from esm2pairs.config import Config
from esm2pairs.data.proteins import (
    RAW_REQUIRED,
    SEQ_COL,
    clean_sequence,
    read_table,
    report_sequences,
    require_columns,
    require_unique_ids,
)
from esm2pairs.paths import PROTEIN_FINAL, Layout
from pipekit.atomic import replacing_uri
from pipekit.errors import InputDataError
from pipekit.uri import join_uri

log = logging.getLogger(__name__)

SKIPPED = "skipped_proteins.csv"


@dataclass(frozen=True)
class PreprocessResult:
    output: str
    n_rows: int
    n_isolates: int
    n_duplicate_rows: int
    n_empty: int
    n_invalid: int
    n_too_long: int


def run(cfg: Config) -> PreprocessResult:
    layout = Layout.from_config(cfg)
    src = layout.raw_protein_file
    df = read_table(src, "raw protein table", "paths.raw_protein_file")
    require_columns(df, RAW_REQUIRED, src)
    df["brc_fea_id"] = df["brc_fea_id"].astype(str)
    df["assembly_id"] = df["assembly_id"].astype(str)
    df[SEQ_COL] = df["prot_seq"].map(clean_sequence)
    # the same record listed twice is harmless; one ID with two sequences is not
    before = len(df)
    df = df.drop_duplicates(subset=["brc_fea_id", SEQ_COL]).reset_index(drop=True)
    n_dup = before - len(df)
    require_unique_ids(df, src)
    empty = df[SEQ_COL] == ""
    skipped = df.loc[empty, ["brc_fea_id"]].assign(reason="empty sequence after cleaning")
    df = df.loc[~empty].reset_index(drop=True)
    if df.empty:
        raise InputDataError(f"{src}: no protein has a sequence")
    df["length"] = df[SEQ_COL].str.len()
    n_invalid, n_long = report_sequences(df[SEQ_COL], cfg.preprocess.esm2_max_residues)
    out = (
        layout.input_file if cfg.paths.input_file else join_uri(layout.processed_dir, PROTEIN_FINAL)
    )
    with replacing_uri(out, "w") as fh:
        df.to_csv(fh, index=False)
    if len(skipped):
        log.warning("%d protein(s) skipped (listed in %s)", len(skipped), SKIPPED)
        with replacing_uri(join_uri(out.rsplit("/", 1)[0], SKIPPED), "w") as fh:
            pd.DataFrame(skipped).to_csv(fh, index=False)
    log.info("preprocess: %d proteins of %d isolates -> %s", len(df), df.assembly_id.nunique(), out)
    return PreprocessResult(
        out, len(df), int(df.assembly_id.nunique()), n_dup, len(skipped), n_invalid, n_long
    )
