"""Ingest mdCATH: per-domain `mdcath_dataset_<domain>.h5` files -> the input contract.

Each file holds group `/<domain>` with the starting structure as PDB text
(`pdbProteinAtoms`) and per-atom `resid`, `resname`, `chain`, `element`; and groups
`/<domain>/<T>/<replica>` (T in 320, 348, 379, 413, 450 K) with `rmsf` (nm, one value per
residue, C-alpha) and `dssp` (frames x residues). Written to `--out`:

- `voxels.hdf5`: frames of the starting structure (`voxelflex.data.structure`);
- `aggregated_rmsf.csv`: one row per residue and temperature: `domain_id, resid, resname,
  temperature_feature, target_rmsf` (mean over replicas), `dssp` (the most frequent class
  over all frames of all replicas) and `relative_accessibility` (residue SASA of the starting
  structure over the residue type's maximum, Tien et al. 2013);
- `failed_ingest_domains.txt`: domain and reason.

One domain at a time (memory: one file), resumable: a domain is marked done only after its
frames and its CSV part are written, a re-run skips done domains and redoes the rest, and the
CSV is assembled from the parts at the end, so a crash never leaves half a domain's rows.
In parallel, `--shard K/N` writers each ingest a contiguous run of the domains into a folder
of their own; a plain run then merges them (frame groups copied, ledgers joined), ingests
whatever no shard finished and writes the CSV: the same outputs as one process.
"""

from __future__ import annotations

import logging
import posixpath
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from fsspec.core import url_to_fs

from voxelflex.data.structure import Residues, backbone_residues, read_structure, voxelize
from voxelflex.errors import InputDataError
from voxelflex.progress import progress
from voxelflex.steps.voxelize import FILE_ATTRS, write_residues

log = logging.getLogger(__name__)

PATTERN = "mdcath_dataset_*.h5"
# Maximum accessible surface area per residue type, theoretical (Tien et al., 2013), A^2
MAX_ASA = {
    "ALA": 129.0, "ARG": 274.0, "ASN": 195.0, "ASP": 193.0, "CYS": 167.0, "GLN": 225.0,
    "GLU": 223.0, "GLY": 104.0, "HIS": 224.0, "ILE": 197.0, "LEU": 201.0, "LYS": 236.0,
    "MET": 224.0, "PHE": 240.0, "PRO": 159.0, "SER": 155.0, "THR": 172.0, "TRP": 285.0,
    "TYR": 263.0, "VAL": 174.0,
}  # fmt: skip
CSV_COLUMNS = [
    "domain_id",
    "resid",
    "resname",
    "temperature_feature",
    "target_rmsf",
    "dssp",
    "relative_accessibility",
]


@dataclass(frozen=True)
class IngestResult:
    voxel_file: str
    rmsf_csv: str
    failed: str
    n_domains: int
    n_failed: int
    n_rows: int


def _text(value) -> str:
    raw = value[()] if hasattr(value, "shape") else value
    if isinstance(raw, np.ndarray):
        raw = raw.item() if raw.shape == () else b"".join(raw.tolist())
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def relative_accessibility(atoms) -> tuple[np.ndarray, np.ndarray]:
    """(residue starts, SASA / max ASA) of each residue, heavy atoms of the structure."""
    import biotite.structure as struc

    heavy = atoms[(atoms.element != "H") & ~atoms.hetero]
    sasa = struc.sasa(heavy, vdw_radii="ProtOr")
    per_res = struc.apply_residue_wise(heavy, sasa, np.nansum)
    names = heavy.res_name[struc.get_residue_starts(heavy)]
    max_asa = np.array([MAX_ASA.get(str(n), np.nan) for n in names])
    return heavy, per_res / max_asa


def _most_frequent(dssp: list[np.ndarray], n_res: int) -> list[str]:
    out = []
    for i in range(n_res):
        counts: Counter = Counter()
        for frames in dssp:
            counts.update(frames[:, i].tolist())
        label = counts.most_common(1)[0][0] if counts else b"-"
        out.append(label.decode() if isinstance(label, bytes) else str(label))
    return out


def ingest_domain(f: h5py.File, domain: str) -> tuple[Residues, pd.DataFrame]:
    """(backbone residues, CSV rows) of one domain, or InputDataError saying why not."""
    import biotite.structure as struc

    if domain not in f:
        raise InputDataError(f"no group /{domain}")
    group = f[domain]
    if "pdbProteinAtoms" not in group:
        raise InputDataError("no pdbProteinAtoms")
    atoms = read_structure(f"{domain}.pdb", text=_text(group["pdbProteinAtoms"]))
    residues = backbone_residues(atoms, domain)
    heavy, rel_acc = relative_accessibility(atoms)
    starts = struc.get_residue_starts(heavy)
    n_res = len(starts)
    rows = []
    temps = sorted((k for k in group if k.isdigit()), key=int)
    if not temps:
        raise InputDataError("no temperature groups")
    for temp in temps:
        reps = [group[temp][r] for r in sorted(group[temp])]
        rmsf = [np.asarray(r["rmsf"][()], dtype=float) for r in reps if "rmsf" in r]
        if not rmsf:
            raise InputDataError(f"no rmsf at {temp} K")
        bad = [len(x) for x in rmsf if len(x) != n_res]
        if bad:
            raise InputDataError(f"rmsf at {temp} K has {bad[0]} values for {n_res} residues")
        dssp = [np.asarray(r["dssp"][()]) for r in reps if "dssp" in r]
        labels = _most_frequent(dssp, n_res) if dssp else ["-"] * n_res
        rows.append(
            pd.DataFrame(
                {
                    "domain_id": domain,
                    "resid": heavy.res_id[starts],
                    "resname": heavy.res_name[starts],
                    "temperature_feature": float(temp),
                    "target_rmsf": np.mean(rmsf, axis=0),
                    "dssp": labels,
                    "relative_accessibility": np.round(rel_acc, 4),
                }
            )
        )
    return residues, pd.concat(rows, ignore_index=True)


def _list_sources(src: str) -> list[str]:
    fs, path = url_to_fs(src)
    found = sorted(fs.glob(posixpath.join(path.rstrip("/"), PATTERN)))
    if not found:
        raise InputDataError(f"no {PATTERN} files in {src}")
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return [p if protocol in ("file", "local") else f"{protocol}://{p}" for p in found]


def _domain_of(path: str) -> str:
    return posixpath.basename(path).removeprefix("mdcath_dataset_").removesuffix(".h5")


class _Ledger:
    """One ingest folder's bookkeeping: domains done (frames and CSV part written) and
    failed (with the reason), appended one line at a time so a crash loses nothing."""

    def __init__(self, parts: Path) -> None:
        self.parts = parts
        parts.mkdir(parents=True, exist_ok=True)
        self.done_file, self.failed_file = parts / "done.txt", parts / "failed.tsv"
        self.done = set(self.done_file.read_text().split()) if self.done_file.exists() else set()
        self.failed: dict[str, str] = {}
        if self.failed_file.exists():
            lines = self.failed_file.read_text().splitlines()
            self.failed = dict(line.split("\t", 1) for line in lines)

    def mark_done(self, domain: str) -> None:
        with self.done_file.open("a") as fh:  # last: the domain's outputs are all written
            fh.write(f"{domain}\n")
        self.done.add(domain)

    def mark_failed(self, domain: str, why: str) -> None:
        with self.failed_file.open("a") as fh:
            fh.write(f"{domain}\t{why}\n")
        self.failed[domain] = why

    def settled(self, domain: str) -> bool:
        return domain in self.done or domain in self.failed


def _ingest(sources: list[str], voxel_file: Path, ledger: _Ledger, desc: str) -> None:
    """Ingest the domains of `sources` not yet settled in `ledger`, one at a time."""
    import fsspec

    todo = [s for s in sources if not ledger.settled(_domain_of(s))]
    if len(todo) < len(sources):
        log.info(
            "resuming: %d of %d domains already settled", len(sources) - len(todo), len(sources)
        )
    with h5py.File(voxel_file, "a") as h5:
        h5.attrs.update(FILE_ATTRS)
        for path in progress(todo, desc=desc, unit="domain"):
            domain = _domain_of(path)
            try:
                with fsspec.open(path, "rb") as fh, h5py.File(fh, "r") as f:
                    residues, rows = ingest_domain(f, domain)
            except (InputDataError, OSError, KeyError, ValueError) as exc:
                log.warning("domain %s failed: %s", domain, exc)
                ledger.mark_failed(domain, str(exc))
                continue
            write_residues(h5, residues, voxelize(residues))
            h5.flush()
            rows.to_csv(ledger.parts / f"{domain}.csv", index=False)
            ledger.mark_done(domain)


def shard_sources(sources: list[str], shard: int, shards: int) -> list[str]:
    """The `shard`-th of `shards` contiguous runs of the (sorted) source files."""
    if not 0 <= shard < shards:
        raise InputDataError(f"--shard must be k/n with 0 <= k < n, not {shard}/{shards}")
    n = len(sources)
    return sources[shard * n // shards : (shard + 1) * n // shards]


def _merge_shards(root: Path, voxel_file: Path, ledger: _Ledger) -> int:
    """Move what shard writers finished into the main outputs: their domains' frame groups
    copied into voxels.hdf5, their CSV parts and failures into the main ledger. A shard
    folder goes once merged; re-running after a crash merges what is left."""
    merged = 0
    for folder in sorted(root.glob("_ingest/shard-*-of-*")):
        shard = _Ledger(folder)
        with h5py.File(voxel_file, "a") as h5:
            h5.attrs.update(FILE_ATTRS)
            if shard.done - ledger.done:
                with h5py.File(folder / "voxels.hdf5", "r") as part:
                    for domain in sorted(shard.done - ledger.done):
                        if domain in h5:  # half-copied by a crashed merge
                            del h5[domain]
                        h5.copy(part[domain], h5, name=domain)
                        h5.flush()
                        shutil.copy(folder / f"{domain}.csv", ledger.parts / f"{domain}.csv")
                        ledger.mark_done(domain)
                        merged += 1
        for domain, why in shard.failed.items():
            if not ledger.settled(domain):
                ledger.mark_failed(domain, why)
        shutil.rmtree(folder)
    if merged:
        log.info("merged %d domains from shard writers", merged)
    return merged


def run(src: str, out: str, shard: tuple[int, int] | None = None) -> IngestResult:
    """Ingest every domain of `src` into `out`. With `shard=(k, n)` ingest only the k-th of
    n contiguous runs of the domains, into a folder of its own (writers run side by side);
    a later plain run merges the shards, ingests anything left and writes the CSV."""
    sources = _list_sources(src)
    root = Path(out)
    if shard is not None:
        k, n = shard
        folder = root / "_ingest" / f"shard-{k}-of-{n}"
        ledger = _Ledger(folder)
        mine = shard_sources(sources, k, n)
        _ingest(mine, folder / "voxels.hdf5", ledger, f"ingest mdCATH {k}/{n}")
        return IngestResult(
            str(folder / "voxels.hdf5"),
            "",
            str(ledger.failed_file),
            len(ledger.done),
            len(ledger.failed),
            0,
        )
    ledger = _Ledger(root / "_ingest")
    voxel_file = root / "voxels.hdf5"
    _merge_shards(root, voxel_file, ledger)
    _ingest(sources, voxel_file, ledger, "ingest mdCATH")
    done, failed = ledger.done, ledger.failed
    csv = root / "aggregated_rmsf.csv"
    parts = ledger.parts
    tables = [pd.read_csv(parts / f"{d}.csv", dtype={"domain_id": str}) for d in sorted(done)]
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=CSV_COLUMNS)
    table[CSV_COLUMNS].to_csv(csv, index=False, float_format="%.6g")
    failed_txt = root / "failed_ingest_domains.txt"
    failed_txt.write_text("".join(f"{d}\t{why}\n" for d, why in sorted(failed.items())))
    log.info(
        "ingested %d domains (%d failed, see %s) -> %s, %s",
        len(done),
        len(failed),
        failed_txt,
        voxel_file,
        csv,
    )
    return IngestResult(
        str(voxel_file), str(csv), str(failed_txt), len(done), len(failed), len(table)
    )
