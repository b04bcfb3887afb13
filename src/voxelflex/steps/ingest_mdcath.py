"""Ingest mdCATH: per-domain `mdcath_dataset_<domain>.h5` files -> the input contract.

The public layout (`layout` = `mdcath-only-protein-v1.0`), flat (`<src>/mdcath_dataset_*.h5`)
or one folder per domain (`<src>/<domain>/mdcath_dataset_<domain>.h5`): group `/<domain>`
with the starting structure as PDB text (`pdbProteinAtoms`: CHARMM residue and atom names,
hydrogens, terminal caps, original numbering) and per-atom `resid`, `resname`, `chain`,
`element`; groups `/<domain>/<T>/<replica>` (T in 320, 348, 379, 413, 450 K) with `rmsf`
(nm, one value per residue, C-alpha) and `dssp` (frames x residues, 8 DSSP states, coil
`b" "`). Names are read as the standard ones (`voxelflex.data.structure.standardize`:
HSD/HSE/HSP -> HIS, ILE CD -> CD1, OT1/OT2 -> O/OXT, caps left out). Written to `--out`:

- `voxels.hdf5`: frames of the starting structure (`voxelflex.data.structure`);
- `aggregated_rmsf.csv`: one row per residue and temperature: `domain_id, resid, resname,
  temperature_feature, target_rmsf` (mean over replicas), `dssp` (the most frequent state
  over all frames of all replicas at that temperature, letters `DSSP_STATES`, coil `C`) and
  `relative_accessibility` (residue SASA of the starting structure over the residue type's
  maximum, Tien et al. 2013; radii `sasa_radii`);
- `failed_ingest_domains.txt` (domain, reason) and `skipped_ingest_residues.txt` (domain,
  chain/residue, reason) for anything that could not be used.

Crash-safe and resumable: each domain's frames, rows and notes are files of their own under
`_ingest/parts/`, each written whole (temp file, fsync, rename); a domain is done when its
CSV part exists. The outputs are then assembled from the parts the same way, so a kill at any
point leaves either the previous outputs or none, and a re-run finishes the job. `--shard K/N`
writers ingest disjoint runs of the domains into the same parts folder side by side; a plain
run then ingests whatever is left and assembles the outputs.
"""

from __future__ import annotations

import logging
import posixpath
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from fsspec.core import url_to_fs

from pipekit import atomic
from pipekit.errors import InputDataError
from pipekit.faults import crashpoint
from pipekit.progress import progress
from voxelflex.data.structure import STANDARD, backbone_residues, read_structure, standardize
from voxelflex.data.structure import voxelize as voxelize_residues
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
# DSSP states in the CSV: the 8 of DSSP (and P, polyproline, of DSSP 4), coil as "C".
# Ties in the most frequent state go to the earlier letter here.
DSSP_STATES = "HGIEBTSPC"
_COIL = {"", " ", "-", "C"}
FALLBACK_RADIUS = 1.8  # A: an atom whose element has no known radius either
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
    n_residues: int = 0
    n_skipped_residues: int = 0


def _text(value) -> str:
    raw = value[()] if hasattr(value, "shape") else value
    if isinstance(raw, np.ndarray):
        raw = raw.item() if raw.shape == () else b"".join(raw.tolist())
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def sasa_radii(atoms) -> np.ndarray:
    """A radius for every atom that cannot fail on a name: ProtOr (standard residue and
    atom names), else the element's van der Waals radius, else `FALLBACK_RADIUS`."""
    from biotite.structure.info import vdw_radius_protor, vdw_radius_single

    cache: dict[tuple[str, str, str], float] = {}
    out = np.empty(atoms.array_length())
    for i, key in enumerate(zip(atoms.res_name, atoms.atom_name, atoms.element, strict=True)):
        if key not in cache:
            res, name, element = (str(k) for k in key)
            try:
                radius = vdw_radius_protor(res, name)
            except (KeyError, ValueError):
                radius = None
            cache[key] = radius or vdw_radius_single(element) or FALLBACK_RADIUS
        out[i] = cache[key]
    return out


def protein_residues(atoms):
    """(heavy atoms of the standard amino acids, residue starts, which residues have a CA).
    `atoms` must be standardized; mdCATH's per-residue arrays follow the residues with a CA."""
    import biotite.structure as struc

    protein = atoms[np.isin(atoms.res_name, list(STANDARD)) & (atoms.element != "H")]
    if protein.array_length() == 0:
        return protein, np.zeros(0, int), np.zeros(0, bool)
    starts = struc.get_residue_starts(protein)
    has_ca = struc.apply_residue_wise(protein, protein.atom_name == "CA", np.any)
    return protein, starts, np.asarray(has_ca, bool)


def relative_accessibility(protein, starts: np.ndarray) -> np.ndarray:
    """Per residue: SASA (heavy atoms, `sasa_radii`) over the residue type's maximum."""
    import biotite.structure as struc

    sasa = struc.sasa(protein, vdw_radii=sasa_radii(protein))
    per_res = struc.apply_residue_wise(protein, sasa, np.nansum)
    max_asa = np.array([MAX_ASA[str(n)] for n in protein.res_name[starts]])
    return per_res / max_asa


def _states(frames: np.ndarray) -> np.ndarray:
    """DSSP array of bytes/str (frames, residues) -> indices into DSSP_STATES."""
    uniq, inverse = np.unique(frames, return_inverse=True)  # a handful of distinct states
    codes = np.empty(len(uniq), dtype=np.int8)
    for j, value in enumerate(uniq.tolist()):
        state = (value.decode() if isinstance(value, bytes) else str(value)).strip()
        state = "C" if state in _COIL else state
        if len(state) != 1 or state not in DSSP_STATES:
            raise InputDataError(f"unknown DSSP state {value!r}")
        codes[j] = DSSP_STATES.index(state)
    return codes[inverse].reshape(frames.shape)


def most_frequent_state(dssp: list[np.ndarray]) -> list[str]:
    """The most frequent DSSP state per residue over all frames of all replicas."""
    codes = np.concatenate([_states(d) for d in dssp])  # (frames of all replicas, residues)
    counts = np.stack([(codes == k).sum(axis=0) for k in range(len(DSSP_STATES))])
    return [DSSP_STATES[k] for k in counts.argmax(axis=0)]


def _temperature_rows(group, temp: str, n_res: int) -> tuple[np.ndarray, list[str]]:
    """(replica-mean RMSF, DSSP label) per residue at one temperature, or InputDataError."""
    reps = sorted((r for r in group[temp] if r.isdigit()), key=int)
    rmsf, dssp = [], []
    for rep in reps:
        g = group[temp][rep]
        if "rmsf" not in g:
            continue
        values = np.asarray(g["rmsf"][()], dtype=np.float64)
        if values.shape != (n_res,):
            raise InputDataError(
                f"rmsf at {temp} K replica {rep} has shape {values.shape} for {n_res} residues"
            )
        if not np.isfinite(values).all():
            raise InputDataError(f"rmsf at {temp} K replica {rep} has non-finite values")
        rmsf.append(values)
        if "dssp" in g:
            states = np.asarray(g["dssp"][()])
            if states.ndim != 2 or states.shape[1] != n_res:
                raise InputDataError(
                    f"dssp at {temp} K replica {rep} has shape {states.shape}: "
                    f"{n_res} residues expected"
                )
            dssp.append(states)
    if not rmsf:
        raise InputDataError(f"no rmsf at {temp} K")
    labels = most_frequent_state(dssp) if dssp else ["C"] * n_res
    return np.mean(rmsf, axis=0), labels


def ingest_domain(f: h5py.File, domain: str):
    """(voxelized residues, CSV rows) of one domain, or InputDataError saying why not."""
    if domain not in f:
        raise InputDataError(f"no group /{domain}")
    group = f[domain]
    if "pdbProteinAtoms" not in group:
        raise InputDataError("no pdbProteinAtoms")
    atoms = read_structure(f"{domain}.pdb", text=_text(group["pdbProteinAtoms"]))
    residues = backbone_residues(atoms, domain)
    protein, starts, has_ca = protein_residues(standardize(atoms))
    rel_acc = relative_accessibility(protein, starts)[has_ca]
    starts = starts[has_ca]  # mdCATH's rmsf and dssp have one column per C-alpha
    n_res = len(starts)
    chain = protein.chain_id[starts].astype(str)
    resid = protein.res_id[starts]
    icode = protein.ins_code[starts]
    keys = [f"{c}/{n}{i.strip()}" for c, n, i in zip(chain, resid, icode, strict=True)]
    framed = {f"{c}/{k}" for c, k in zip(residues.chain, residues.resid_str, strict=True)}
    keep = np.array([k in framed for k in keys], dtype=bool)
    temps = sorted((k for k in group if k.isdigit()), key=int)
    if not temps:
        raise InputDataError("no temperature groups")
    rows = []
    for temp in temps:
        rmsf, labels = _temperature_rows(group, temp, n_res)
        rows.append(
            pd.DataFrame(
                {
                    "domain_id": domain,
                    "resid": resid[keep],
                    "resname": protein.res_name[starts][keep],
                    "temperature_feature": float(temp),
                    "target_rmsf": rmsf[keep],
                    "dssp": np.asarray(labels, dtype=object)[keep],
                    "relative_accessibility": np.round(rel_acc[keep], 4),
                }
            )
        )
    return residues, pd.concat(rows, ignore_index=True)


def list_sources(src: str) -> list[str]:
    """Every `mdcath_dataset_<domain>.h5` in `src` or one folder below it (the public
    per-domain layout), sorted by domain; a domain found twice is an error."""
    fs, path = url_to_fs(src)
    root = path.rstrip("/")
    found = [*fs.glob(posixpath.join(root, PATTERN)), *fs.glob(posixpath.join(root, "*", PATTERN))]
    if not found:
        raise InputDataError(f"no {PATTERN} files in {src} (or in its domain folders)")
    by_domain: dict[str, str] = {}
    for p in found:
        d = domain_of(p)
        if d in by_domain:
            raise InputDataError(f"domain {d} is in {src} twice: {by_domain[d]} and {p}")
        by_domain[d] = p
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    local = protocol in ("file", "local")
    return [by_domain[d] if local else f"{protocol}://{by_domain[d]}" for d in sorted(by_domain)]


def domain_of(path: str) -> str:
    return posixpath.basename(path).removeprefix("mdcath_dataset_").removesuffix(".h5")


class Parts:
    """The per-domain parts under `<out>/_ingest/parts/`: `<d>.h5` (frames), `<d>.csv`
    (rows; written last, so its presence means done), `<d>.skipped` and `<d>.failed`.
    Every part is written whole (atomic.replacing), so writers never see half of one."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "_ingest" / "parts"
        self.dir.mkdir(parents=True, exist_ok=True)

    def clean(self) -> None:
        """Remove what writers killed before a rename left (never while shard writers run:
        only the plain run, which comes after them, calls this)."""
        for folder in (self.dir, self.dir.parent.parent):
            atomic.remove_leftovers(folder)

    def path(self, domain: str, kind: str) -> Path:
        return self.dir / f"{domain}.{kind}"

    def done(self) -> set[str]:
        return {p.stem for p in self.dir.glob("*.csv")}

    def failed(self) -> dict[str, str]:
        return {p.stem: p.read_text() for p in self.dir.glob("*.failed")}

    def settled(self, domain: str) -> bool:
        return self.path(domain, "csv").exists() or self.path(domain, "failed").exists()

    def write_failed(self, domain: str, why: str) -> None:
        atomic.write_text(self.path(domain, "failed"), why)

    def write_done(self, domain: str, residues, rows: pd.DataFrame) -> None:
        with atomic.replacing(self.path(domain, "h5")) as tmp, h5py.File(tmp, "w") as h5:
            write_residues(h5, residues, voxelize_residues(residues))
            crashpoint("ingest.part_h5")  # half a domain's frames in the temp file
        skipped = "".join(f"{w}\t{why}\n" for w, why in residues.skipped.items())
        atomic.write_text(self.path(domain, "skipped"), skipped)
        crashpoint("ingest.before_csv")  # frames written, the domain not yet done
        with atomic.replacing(self.path(domain, "csv")) as tmp:
            rows.to_csv(tmp, index=False)
        self.path(domain, "failed").unlink(missing_ok=True)  # from an earlier failed try

    def forget(self, domain: str) -> None:
        for kind in ("csv", "h5", "skipped", "failed"):
            self.path(domain, kind).unlink(missing_ok=True)


def _ingest(sources: list[str], parts: Parts, desc: str) -> None:
    """Ingest the domains of `sources` not yet settled, one at a time."""
    import fsspec

    todo = [s for s in sources if not parts.settled(domain_of(s))]
    if len(todo) < len(sources):
        done = len(sources) - len(todo)
        log.info("resuming: %d of %d domains already settled", done, len(sources))
    for path in progress(todo, desc=desc, unit="domain"):
        domain = domain_of(path)
        try:
            with fsspec.open(path, "rb") as fh, h5py.File(fh, "r") as f:
                residues, rows = ingest_domain(f, domain)
        except Exception as exc:  # one bad domain never stops the run: it is listed
            why = str(exc) if isinstance(exc, InputDataError) else f"{type(exc).__name__}: {exc}"
            log.warning("domain %s failed: %s", domain, why)
            log.debug("domain %s", domain, exc_info=True)
            parts.write_failed(domain, why)
            continue
        parts.write_done(domain, residues, rows)


def shard_sources(sources: list[str], shard: int, shards: int) -> list[str]:
    """The `shard`-th of `shards` contiguous runs of the (sorted) source files."""
    if not 0 <= shard < shards:
        raise InputDataError(f"--shard must be k/n with 0 <= k < n, not {shard}/{shards}")
    n = len(sources)
    return sources[shard * n // shards : (shard + 1) * n // shards]


def _readable(path: Path) -> bool:
    try:
        with h5py.File(path, "r"):
            return True
    except OSError:
        return False


def _assemble(root: Path, parts: Parts, domains: list[str]) -> tuple[Path, Path, pd.DataFrame]:
    """voxels.hdf5 and aggregated_rmsf.csv from the done parts of `domains`, each written
    whole; returns their paths and the table."""
    voxel_file, csv = root / "voxels.hdf5", root / "aggregated_rmsf.csv"
    with atomic.replacing(voxel_file) as tmp, h5py.File(tmp, "w") as h5:
        h5.attrs.update(FILE_ATTRS)
        for i, domain in enumerate(progress(domains, desc="assemble voxels", unit="domain")):
            with h5py.File(parts.path(domain, "h5"), "r") as part:
                h5.copy(part[domain], h5, name=domain)
            if i == len(domains) // 2:
                crashpoint("ingest.assemble")  # half the domains in the temp voxel file
    tables = [pd.read_csv(parts.path(d, "csv"), dtype={"domain_id": str}) for d in domains]
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=CSV_COLUMNS)
    with atomic.replacing(csv) as tmp:
        table[CSV_COLUMNS].to_csv(tmp, index=False, float_format="%.6g")
    return voxel_file, csv, table


def run(src: str, out: str, shard: tuple[int, int] | None = None) -> IngestResult:
    """Ingest every domain of `src` into `out`. With `shard=(k, n)` ingest only the k-th of
    n contiguous runs of the domains (writers run side by side); a later plain run ingests
    anything left and writes the outputs."""
    sources = list_sources(src)
    root = Path(out)
    parts = Parts(root)
    if shard is not None:
        k, n = shard
        mine = shard_sources(sources, k, n)
        _ingest(mine, parts, f"ingest mdCATH {k}/{n}")
        mine_names = {domain_of(s) for s in mine}
        failed = {d: why for d, why in parts.failed().items() if d in mine_names}
        done_here = parts.done() & mine_names
        return IngestResult("", "", str(parts.dir), len(done_here), len(failed), 0)
    parts.clean()
    _ingest(sources, parts, "ingest mdCATH")
    names = [domain_of(s) for s in sources]
    # a part that cannot be opened (a disk fault, not a kill: parts are renamed in whole)
    broken = [d for d in sorted(parts.done() & set(names)) if not _readable(parts.path(d, "h5"))]
    for domain in broken:
        log.warning("domain %s: its frames part is unreadable; ingesting it again", domain)
        parts.forget(domain)
    if broken:
        _ingest(sources, parts, "ingest mdCATH (again)")
    done = sorted(parts.done() & set(names))
    failed = {d: why for d, why in sorted(parts.failed().items()) if d in names}
    voxel_file, csv, table = _assemble(root, parts, done)
    n_rows, n_res = len(table), len(table.drop_duplicates(["domain_id", "resid"]))
    failed_txt = root / "failed_ingest_domains.txt"
    atomic.write_text(failed_txt, "".join(f"{d}\t{why}\n" for d, why in failed.items()))
    skipped = "".join(
        f"{d}\t{line}\n" for d in done for line in parts.path(d, "skipped").read_text().splitlines()
    )
    atomic.write_text(root / "skipped_ingest_residues.txt", skipped)
    n_skipped = skipped.count("\n")
    log.info(
        "ingested %d domains (%d residues; %d failed, see %s; %d residues skipped) -> %s, %s",
        len(done),
        n_res,
        len(failed),
        failed_txt,
        n_skipped,
        voxel_file,
        csv,
    )
    return IngestResult(
        str(voxel_file), str(csv), str(failed_txt), len(done), len(failed), n_rows, n_res, n_skipped
    )
