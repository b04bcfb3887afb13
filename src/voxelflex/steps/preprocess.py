"""Preprocess: join voxel residues, RMSF rows and splits into the metadata table (no voxels).

Writes `master_samples.parquet`, `temp_scaling_params.json` (training split only) and
`failed_preprocess_domains.txt`. Lists the voxel file's keys once; joins are vectorized.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pipekit.atomic import replacing_uri
from pipekit.errors import InputDataError
from pipekit.uri import require_file
from voxelflex.config import Config, save_resolved_config
from voxelflex.data.rmsf_csv import CHAIN, OPTIONAL, clean_rmsf_rows, read_rmsf_csv
from voxelflex.data.splits import SPLITS, read_splits
from voxelflex.data.structure import RESNAME_ALIASES
from voxelflex.data.temperature import TemperatureScaler
from voxelflex.data.voxels import open_voxel_source
from voxelflex.paths import RunPaths

log = logging.getLogger(__name__)

MASTER_COLUMNS = (
    "domain_id",
    "chain_id",
    "resid_str",
    "resid",
    "resname",
    "raw_temp",
    "target_rmsf",
    "split",
)
_RESID_RE = r"^\s*(-?\d+)\s*([A-Za-z]?)\s*$"


@dataclass(frozen=True)
class PreprocessResult:
    master_samples: str
    temp_scaling: str
    failed_domains: str
    n_samples: int
    n_residues: int
    counts: dict[str, int] = field(default_factory=dict)


def parse_residue_keys(residues: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Add integer `resid` and insertion code `icode` ("52A" -> 52, "A"); drop unparseable keys."""
    parts = residues["resid_str"].str.extract(_RESID_RE)
    ok = parts[0].notna().to_numpy()
    out = residues.loc[ok].copy()
    out["resid"] = parts.loc[ok, 0].astype(np.int64).to_numpy()
    out["icode"] = parts.loc[ok, 1].fillna("").to_numpy()
    return out, int((~ok).sum())


def pick_one_residue_per_resid(
    residues: pd.DataFrame, by_chain: bool = False
) -> tuple[pd.DataFrame, int]:
    """The CSV keys residues by integer resid (and chain, where it has a `chain_id` column);
    where a domain has several voxel residues for one key (insertion codes; several chains
    and no chain in the CSV), keep the plain one of the first chain."""
    ranked = residues.assign(_has_icode=residues["icode"] != "").sort_values(
        ["domain_id", "resid", "_has_icode", "chain_id", "icode"], kind="stable"
    )
    keys = ["domain_id", "chain_id", "resid"] if by_chain else ["domain_id", "resid"]
    dup = ranked.duplicated(subset=keys, keep="first")
    return ranked.loc[~dup].drop(columns="_has_icode"), int(dup.sum())


def _standard(names: pd.Series) -> pd.Series:
    return names.astype(str).str.strip().str.upper().replace(RESNAME_ALIASES)


def drop_resname_mismatches(master: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Rows whose CSV `resname` is not the residue the voxels were made of (their `label`
    attribute; force-field names such as HSD count as their standard name); returns the rest
    and the number of residues dropped. Grids without a label are not checked."""
    known = master["label"].notna()
    bad = known & (_standard(master["resname"]) != _standard(master["label"].fillna("")))
    n_bad = len(master.loc[bad].drop_duplicates(["domain_id", "chain_id", "resid_str"]))
    if n_bad:
        example = master.loc[bad].iloc[0]
        log.warning(
            "%d residues skipped: the CSV resname differs from the voxel label, e.g. %s/%s/%s "
            "%s in the CSV, %s in the voxel file",
            n_bad,
            example["domain_id"],
            example["chain_id"],
            example["resid_str"],
            example["resname"],
            example["label"],
        )
    return master.loc[~bad].drop(columns="label"), n_bad


def _write_failed(uri: str, failed: dict[str, str]) -> None:
    with replacing_uri(uri, "w") as fh:
        fh.write("# domain_id\treason\n")
        for domain, reason in failed.items():
            fh.write(f"{domain}\t{reason}\n")


def run(cfg: Config) -> PreprocessResult:
    paths = RunPaths.from_config(cfg)
    save_resolved_config(cfg, paths.resolved_config("preprocess"))
    splits = read_splits(cfg.input)
    csv_uri = require_file(cfg.input.aggregated_rmsf_file, "input.aggregated_rmsf_file")
    source = open_voxel_source(cfg.input.voxel_file)
    counts: dict[str, int] = {}

    split_of = pd.Series(
        {d: name for name in SPLITS for d in splits[name]}, dtype="string", name="split"
    )
    wanted = list(split_of.index)
    voxel_domains = set(source.domain_ids())  # the one listing of top-level keys
    counts["voxel_domains_in_no_split"] = len(voxel_domains - set(wanted))

    log.info("reading RMSF CSV %s", csv_uri)
    rmsf = read_rmsf_csv(csv_uri)
    counts["csv_rows"] = len(rmsf)
    csv_domains = set(rmsf["domain_id"].unique())
    rmsf = rmsf.loc[rmsf["domain_id"].isin(split_of.index)]
    rmsf, dropped = clean_rmsf_rows(rmsf)
    counts.update(dropped)

    failed: dict[str, str] = {}
    for d in wanted:
        if d not in voxel_domains:
            failed[d] = "not in voxel file"
        elif d not in csv_domains:
            failed[d] = "no rows in RMSF CSV"
    present = [d for d in wanted if d not in failed]

    residues = source.list_residues(present, labels=True)
    source.close()
    counts["voxel_residues_listed"] = len(residues)
    residues, counts["unparseable_residue_keys"] = parse_residue_keys(residues)
    by_chain = CHAIN in rmsf.columns
    residues, counts["ambiguous_voxel_residues"] = pick_one_residue_per_resid(residues, by_chain)
    join = ["domain_id", "chain_id", "resid"] if by_chain else ["domain_id", "resid"]

    # residue-level counts only within domains not already reported as failed
    csv_keys = rmsf.loc[rmsf["domain_id"].isin(present), join].drop_duplicates()
    matched = residues.merge(csv_keys, on=join, how="outer", indicator=True)
    counts["voxel_residues_not_in_csv"] = int((matched["_merge"] == "left_only").sum())
    counts["csv_residues_not_in_voxels"] = int((matched["_merge"] == "right_only").sum())

    master = residues.drop(columns="icode").merge(rmsf, on=join, how="inner")
    master, counts["resname_label_mismatches"] = drop_resname_mismatches(master)
    master = master.rename(columns={"temperature_feature": "raw_temp"})
    master["split"] = split_of.reindex(master["domain_id"]).to_numpy()
    extra = [c for c in OPTIONAL if c in master.columns]
    master = master[[*MASTER_COLUMNS, *extra]].sort_values(
        ["domain_id", "chain_id", "resid", "resid_str", "raw_temp"], kind="stable"
    )
    master = master.reset_index(drop=True)

    with_samples = set(master["domain_id"].unique())
    for d in present:
        if d not in with_samples:
            failed[d] = "no voxel residue matches a valid RMSF row"
    counts["failed_domains"] = len(failed)
    for key, value in counts.items():
        level = (
            logging.WARNING
            if value and key not in ("csv_rows", "voxel_residues_listed")
            else logging.INFO
        )
        log.log(level, "preprocess: %s = %d", key, value)

    if master.empty:
        _write_failed(paths.failed_domains, failed)
        raise InputDataError(
            "no samples left after joining voxels, RMSF rows and splits; "
            f"see {paths.failed_domains} for the reason per domain"
        )
    train_temps = master.loc[master["split"] == "train", "raw_temp"].to_numpy()
    scaler = TemperatureScaler.fit(train_temps)
    if scaler.temp_max == scaler.temp_min:
        log.warning(
            "training split has one temperature (%.1f K): scaling range set to 1 K", scaler.temp_min
        )

    with replacing_uri(paths.master_samples, "wb") as fh:  # whole, or the previous one
        master.to_parquet(fh, index=False)
    scaler.save(paths.processed_temp_scaling)  # with the metadata: any later run finds it
    scaler.save(paths.temp_scaling)
    _write_failed(paths.failed_domains, failed)
    n_res = len(master.drop_duplicates(["domain_id", "chain_id", "resid_str"]))
    by_split = master["split"].value_counts().to_dict()
    log.info(
        "preprocess: %d samples (%d residues) written to %s; per split %s; temperature %.1f-%.1f K",
        len(master),
        n_res,
        paths.master_samples,
        by_split,
        scaler.temp_min,
        scaler.temp_max,
    )
    return PreprocessResult(
        paths.master_samples, paths.temp_scaling, paths.failed_domains, len(master), n_res, counts
    )
