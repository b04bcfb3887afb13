"""Preprocess: join voxel residues, RMSF rows and splits into the metadata table (no voxels).

Writes `master_samples.parquet`, `temp_scaling_params.json` (training split only) and
`failed_preprocess_domains.txt`. Lists the voxel file's keys once; joins are vectorized.
"""

from __future__ import annotations

import io
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pandas as pd

from pipekit.atomic import replacing_uri
from pipekit.errors import InputDataError
from pipekit.uri import require_file
from voxelflex.config import Config, save_resolved_config
from voxelflex.data.rmsf_csv import CHAIN, OPTIONAL, clean_rmsf_rows, read_rmsf_csv
from voxelflex.data.sample_join import Joined, join_samples
from voxelflex.data.sources import open_voxel_source
from voxelflex.data.splits import SPLITS, read_splits
from voxelflex.data.temperature import TemperatureScaler
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


@dataclass(frozen=True)
class PreprocessResult:
    master_samples: str
    temp_scaling: str
    failed_domains: str
    n_samples: int
    n_residues: int
    counts: dict[str, int] = field(default_factory=dict)
    labels_read: int = 0  # voxel label reads the resname check cost


def _with_split(joined: Joined, split_of: pd.Series) -> pd.DataFrame:
    """The contract's columns, in order, each sample's split added."""
    master = joined.master
    split_names = split_of.reindex(joined.domain_names).to_numpy()
    master["split"] = pd.array(split_names, dtype="str").take(joined.domain)
    extra = [c for c in OPTIONAL if c in master.columns]
    return master[[*MASTER_COLUMNS, *extra]]


def _parquet(master: pd.DataFrame) -> bytes:
    # no column statistics: every reader reads the whole table (and they cost a quarter of
    # the write)
    buffer = io.BytesIO()
    master.to_parquet(buffer, index=False, write_statistics=False)
    return buffer.getvalue()


def _write_failed(uri: str, failed: dict[str, str]) -> None:
    with replacing_uri(uri, "w") as fh:
        fh.write("# domain_id\treason\n")
        for domain, reason in failed.items():
            fh.write(f"{domain}\t{reason}\n")


def _log_counts(counts: dict[str, int]) -> None:
    """Each count on its own line; a warning where it is not zero and means a loss."""
    for key, value in counts.items():
        level = (
            logging.WARNING
            if value and key not in ("csv_rows", "voxel_residues_listed")
            else logging.INFO
        )
        log.log(level, "preprocess: %s = %d", key, value)


def _fit_scaling(master: pd.DataFrame) -> TemperatureScaler:
    """The temperature scaling of the training split's temperatures."""
    scaler = TemperatureScaler.fit(master.loc[master["split"] == "train", "raw_temp"].to_numpy())
    if scaler.temp_max == scaler.temp_min:
        log.warning(
            "training split has one temperature (%.1f K): scaling range set to 1 K", scaler.temp_min
        )
    return scaler


def _read_both(source, domains: list[str], csv_uri: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The voxel file's residues of `domains` and the RMSF CSV: the CSV is parsed (pyarrow,
    without the GIL) in a thread while the voxel keys are listed (h5py, holding it), so on
    two cores the two reads overlap."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        log.info("reading RMSF CSV %s", csv_uri)
        reading = pool.submit(read_rmsf_csv, csv_uri, False)
        residues = source.list_residues(domains)
        return residues, reading.result()


def _write_outputs(
    paths: RunPaths, master: pd.DataFrame, encoded: bytes, failed: dict[str, str], n_res: int
) -> None:
    """The sample metadata (whole, or the previous one stays), its temperature scaling (with
    it, where any later run finds it, and in this run's models/) and the failed domains."""
    scaler = _fit_scaling(master)
    with replacing_uri(paths.master_samples, "wb") as fh:
        fh.write(encoded)
    scaler.save(paths.processed_temp_scaling)
    scaler.save(paths.temp_scaling)
    _write_failed(paths.failed_domains, failed)
    log.info(
        "preprocess: %d samples (%d residues) written to %s; per split %s; temperature %.1f-%.1f K",
        len(master),
        n_res,
        paths.master_samples,
        master["split"].value_counts().to_dict(),
        scaler.temp_min,
        scaler.temp_max,
    )


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

    in_voxels = [d for d in wanted if d in voxel_domains]
    residues, rmsf = _read_both(source, in_voxels, csv_uri)
    counts["csv_rows"] = len(rmsf)
    csv_domains = set(rmsf["domain_id"].unique())
    rmsf = rmsf.loc[rmsf["domain_id"].isin(split_of.index)]
    rmsf, dropped = clean_rmsf_rows(rmsf)
    counts.update(dropped)

    failed = {
        d: "not in voxel file" if d not in voxel_domains else "no rows in RMSF CSV"
        for d in wanted
        if d not in voxel_domains or d not in csv_domains
    }
    present = [d for d in wanted if d not in failed]
    if len(present) < len(in_voxels):  # listed, but without CSV rows
        residues = residues.loc[residues["domain_id"].isin(present)].reset_index(drop=True)
    counts["voxel_residues_listed"] = len(residues)
    joined = join_samples(residues, rmsf, present, CHAIN in rmsf.columns, source.read_labels)
    # encoded while the resname check reads its labels; again only if it drops residues
    master = _with_split(joined, split_of)
    encoded = _parquet(master)
    joined, check = joined.checked()
    source.close()
    counts.update(joined.counts)
    counts["resname_label_mismatches"] = check.dropped_residues
    log.info(
        "preprocess: %d voxel labels read to check the CSV's resnames (%d chains whole)",
        check.labels_read,
        check.chains_read_whole,
    )
    if check.dropped_residues:
        master = _with_split(joined, split_of)
        encoded = _parquet(master)

    with_samples = set(master["domain_id"].unique())
    for d in present:
        if d not in with_samples:
            failed[d] = "no voxel residue matches a valid RMSF row"
    counts["failed_domains"] = len(failed)
    _log_counts(counts)

    if master.empty:
        _write_failed(paths.failed_domains, failed)
        raise InputDataError(
            "no samples left after joining voxels, RMSF rows and splits; "
            f"see {paths.failed_domains} for the reason per domain"
        )
    n_res = joined.n_residues
    _write_outputs(paths, master, encoded, failed, n_res)
    return PreprocessResult(
        paths.master_samples,
        paths.temp_scaling,
        paths.failed_domains,
        len(master),
        n_res,
        counts,
        check.labels_read,
    )
