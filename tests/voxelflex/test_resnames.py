"""The CSV's resnames against the voxel labels, read a few per chain: an offset numbering is
caught and skipped with its count; a file without labels costs a handful of reads."""

from __future__ import annotations

from pathlib import Path

import h5py
import pandas as pd
import yaml

from tests.conftest import grid
from voxelflex.config import load_config
from voxelflex.data import resnames
from voxelflex.steps import preprocess

# E. coli adenylate kinase, residues 1-36 (UniProt P69441)
ADK = "MRIILLGAPGAGKGTQAQFIMEKYGIPQISTGDMLR"
THREE = {
    "A": "ALA", "C": "CYS", "D": "ASP", "E": "GLU", "F": "PHE", "G": "GLY", "H": "HIS",
    "I": "ILE", "K": "LYS", "L": "LEU", "M": "MET", "N": "ASN", "P": "PRO", "Q": "GLN",
    "R": "ARG", "S": "SER", "T": "THR", "V": "VAL", "W": "TRP", "Y": "TYR",
}  # fmt: skip


class CountingReader:
    """Labels from a dict, counting every residue read."""

    def __init__(self, labels: dict[tuple[str, str, str], str | None]) -> None:
        self.labels, self.reads = labels, 0

    def __call__(self, domain: str, chain: str, keys: list[str]) -> list[str | None]:
        self.reads += len(keys)
        return [self.labels.get((domain, chain, k)) for k in keys]


def _table(domains: dict[str, str], offset: dict[str, int]) -> pd.DataFrame:
    """CSV rows matched to voxel residues: the CSV's resname of residue r is the sequence's
    residue r + offset (an offset of 1: the CSV numbered one off from the voxels)."""
    rows = []
    for d, seq in domains.items():
        k = offset.get(d, 0)
        for r in range(1, len(seq) + 1 - k):
            rows.append((d, "A", str(r), THREE[seq[r - 1 + k]]))
    return pd.DataFrame(rows, columns=[*resnames.KEY, "resname"])


def test_an_offset_by_one_domain_is_caught_and_exactly_its_differing_residues_dropped() -> None:
    domains = {f"d{i}": ADK for i in range(40)}
    table = _table(domains, {"d7": 1})
    labels = {(d, "A", str(r)): THREE[s[r - 1]] for d, s in domains.items() for r in range(1, 37)}
    reader = CountingReader(labels)
    kept, done = resnames.check(table, reader)
    # where a residue is followed by its own kind the offset cannot show: II and LL in ADK
    same_next = sum(ADK[i] == ADK[i + 1] for i in range(len(ADK) - 1))
    assert same_next == 2
    assert done.labelled and done.chains_read_whole == 1
    assert done.dropped_residues == (len(ADK) - 1) - same_next
    assert len(kept) == len(table) - done.dropped_residues
    assert set(kept.loc[kept.domain_id != "d7", "resid_str"].groupby(kept.domain_id).size()) == {36}
    # one per chain, and the one chain read whole
    assert reader.reads == done.labels_read == 40 + (len(ADK) - 1)


def test_force_field_names_are_their_standard_residues() -> None:
    table = pd.DataFrame(
        [("d", "A", "1", "HIS"), ("d", "A", "2", "ALA")], columns=[*resnames.KEY, "resname"]
    )
    kept, done = resnames.check(
        table, CountingReader({("d", "A", "1"): "HSD", ("d", "A", "2"): "ALA"})
    )
    assert done.dropped_residues == 0 and len(kept) == 2


def test_a_file_without_labels_costs_only_the_probe() -> None:
    domains = {f"d{i}": ADK for i in range(2000)}
    table = _table(domains, {"d9": 1})
    reader = CountingReader({})
    kept, done = resnames.check(table, reader)
    assert not done.labelled and done.dropped_residues == 0 and len(kept) == len(table)
    assert reader.reads == resnames.PROBE  # out of 72,000 residues


def _voxel_file(path: Path, labelled: bool) -> None:
    with h5py.File(path, "w") as f:
        for d in ("d1", "d2", "d3"):
            for r, aa in enumerate(ADK, start=1):
                ds = f.create_dataset(f"{d}/A/{r}", data=grid(r))
                if labelled:
                    ds.attrs["label"] = THREE[aa]


def _config(tmp_path: Path, labelled: bool) -> Path:
    _voxel_file(tmp_path / "v.h5", labelled)
    rows = []
    for d in ("d1", "d2", "d3"):
        shift = 1 if d == "d2" else 0  # d2's CSV numbered one off
        for r in range(1, len(ADK) + 1 - shift):
            for t in (320.0, 450.0):
                rows.append((d, r, THREE[ADK[r - 1 + shift]], t, 0.1))
    cols = ["domain_id", "resid", "resname", "temperature_feature", "target_rmsf"]
    pd.DataFrame(rows, columns=cols).to_csv(tmp_path / "r.csv", index=False)
    for split, d in (("train", "d1\nd2"), ("val", "d3"), ("test", "")):
        (tmp_path / f"{split}.txt").write_text(d + "\n")
    cfg = {
        "input": {
            "voxel_file": "v.h5",
            "aggregated_rmsf_file": "r.csv",
            **{f"{s}_split_file": f"{s}.txt" for s in ("train", "val", "test")},
        },
        "data": {"processed_dir": "processed"},
        "output": {"base_dir": "outputs"},
        "logging": {"show_progress": False},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    return tmp_path / "c.yaml"


def test_preprocess_skips_an_offset_domains_residues_with_their_count(tmp_path: Path) -> None:
    res = preprocess.run(load_config(str(_config(tmp_path, labelled=True))))
    same_next = sum(ADK[i] == ADK[i + 1] for i in range(len(ADK) - 1))
    assert res.counts["resname_label_mismatches"] == len(ADK) - 1 - same_next
    master = pd.read_parquet(res.master_samples)
    per_domain = master.drop_duplicates(["domain_id", "resid"]).groupby("domain_id").size()
    assert per_domain.to_dict() == {"d1": 36, "d2": same_next, "d3": 36}
    assert res.labels_read == 3 + (len(ADK) - 1)


def test_preprocess_of_a_file_without_labels_reads_none_but_the_probe(tmp_path: Path) -> None:
    res = preprocess.run(load_config(str(_config(tmp_path, labelled=False))))
    assert res.counts["resname_label_mismatches"] == 0
    assert res.labels_read == 3  # every residue sampled so far: one per chain, all unlabelled


def test_the_residue_read_is_one_an_offset_by_one_cannot_hide() -> None:
    """GLY GLY ALA ALA SER: only SER differs from both neighbours (a one-off numbering could
    hide behind any of the others), so SER is the residue read."""
    names = ["GLY", "GLY", "ALA", "ALA", "SER"]
    table = pd.DataFrame(
        [("d", "A", str(i + 1), n) for i, n in enumerate(names)], columns=[*resnames.KEY, "resname"]
    )
    assert resnames.sample_rows(table)["resid_str"].tolist() == ["5"]
    # the CSV's names shifted one (its resid r names voxel residue r + 1): caught
    labels = {("d", "A", str(i + 1)): n for i, n in enumerate(["GLY", "GLY", "GLY", "ALA", "ALA"])}
    _, done = resnames.check(table, CountingReader(labels))
    assert done.dropped_residues == 2 and done.chains_read_whole == 1
