"""Does the RMSF CSV name the residues the voxels were made of? Checked without a read per
residue.

A voxel file may record each grid's residue name (the dataset attribute `label`: the
voxelizer and ingest write it). Reading it for every residue is one metadata read per
residue (737k on mdCATH, each remote where the file is in object storage), so: one residue
per chain is read, one whose CSV name differs from both its neighbours' (a CSV numbered one
off from the voxels then disagrees there for certain), and only a chain where it disagrees is
read whole, to drop exactly its residues that differ.
A file whose first residues carry no label carries none: then nothing more is read.
Force-field names (HSD, HSE, ...) count as their standard name.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from voxelflex.data.structure import RESNAME_ALIASES

log = logging.getLogger(__name__)

KEY = ["domain_id", "chain_id", "resid_str"]
PROBE = 24  # sampled residues without a label before a file counts as carrying none

# (domain, chain, resid_strs) -> the label of each residue (None: not recorded)
LabelReader = Callable[[str, str, list[str]], list[str | None]]


@dataclass(frozen=True)
class ResnameCheck:
    dropped_residues: int  # residues whose CSV resname differs from the voxel label
    labels_read: int  # label reads this cost
    chains_read_whole: int
    labelled: bool  # whether the voxel file records labels at all


def standard(names: pd.Series) -> pd.Series:
    return names.astype(str).str.strip().str.upper().replace(RESNAME_ALIASES)


def _groups(rows: pd.DataFrame) -> np.ndarray:
    """A number per (domain, chain) of each row."""
    dom = pd.factorize(rows["domain_id"])[0].astype(np.int64)
    chain, names = pd.factorize(rows["chain_id"])
    return dom * max(len(names), 1) + chain


def sample_rows(residues: pd.DataFrame, group: np.ndarray | None = None) -> pd.DataFrame:
    """One residue of each chain: the first (in the table's order) whose CSV name differs
    from both neighbours' (else the chain's first). Numbered one off, the voxel file would
    hold a neighbour there, so that one read shows it for certain. `group`: the chain of
    each row (`_groups`), where known."""
    if residues.empty:
        return residues
    group = _groups(residues) if group is None else group
    order = np.argsort(group, kind="stable")
    g = group[order]
    name = standard(residues["resname"]).to_numpy(dtype=object)[order]
    starts = np.r_[True, g[1:] != g[:-1]]
    ends = np.r_[g[1:] != g[:-1], True]
    lone = np.ones(len(g), dtype=bool)
    lone[1:] &= starts[1:] | (name[1:] != name[:-1])
    lone[:-1] &= ends[:-1] | (name[:-1] != name[1:])
    # per chain, the first lone residue, else the first residue
    first_lone = np.minimum.reduceat(
        np.where(lone, np.arange(len(g)), len(g)), np.flatnonzero(starts)
    )
    pick = np.where(first_lone < len(g), first_lone, np.flatnonzero(starts))
    return residues.iloc[np.sort(order[pick])]


def _read(rows: pd.DataFrame, read: LabelReader) -> list[str | None]:
    """The label of each row, in the rows' order, read chain by chain."""
    doms = rows["domain_id"].to_numpy(dtype=object)
    chains = rows["chain_id"].to_numpy(dtype=object)
    keys = rows["resid_str"].to_numpy(dtype=object)
    by_chain: dict[tuple[str, str], list[int]] = {}
    for i, where in enumerate(zip(doms, chains, strict=True)):
        by_chain.setdefault(where, []).append(i)
    out: list[str | None] = [None] * len(rows)
    for (dom, chain), at in by_chain.items():
        got = read(str(dom), str(chain), [str(keys[i]) for i in at])
        for i, label in zip(at, got, strict=True):
            out[i] = label
    return out


def _differs(rows: pd.DataFrame, labels: list[str | None]) -> np.ndarray:
    label = pd.Series(labels, index=rows.index, dtype=object)
    known = label.notna().to_numpy()
    return known & (standard(rows["resname"]) != standard(label.fillna(""))).to_numpy()


def check(residues: pd.DataFrame, read: LabelReader) -> tuple[pd.DataFrame, ResnameCheck]:
    """`residues`: one row per voxel residue matched to the CSV (KEY and `resname`; each
    residue once). Returns the residues whose resname agrees (or cannot be checked), with
    their index, and what the check did."""
    group = _groups(residues)
    sample = sample_rows(residues, group)
    probe = sample.iloc[:PROBE]
    probed = _read(probe, read)
    if all(label is None for label in probed):
        log.info("the voxel file records no residue names: CSV resnames are not checked")
        return residues, ResnameCheck(0, len(probed), 0, False)
    rest = sample.iloc[PROBE:]
    labels = probed + _read(rest, read)
    sampled_group = group[residues.index.get_indexer(sample.index)]
    suspects = np.unique(sampled_group[_differs(sample, labels)])
    whole = residues.loc[np.isin(group, suspects)]
    whole_labels = _read(whole, read)
    wrong = _differs(whole, whole_labels)
    if wrong.any():
        first = int(np.flatnonzero(wrong)[0])
        log.warning(
            "%d residues skipped: the CSV resname differs from the voxel label, e.g. %s/%s/%s "
            "%s in the CSV, %s in the voxel file (%d chains affected)",
            int(wrong.sum()),
            *whole.iloc[first][KEY],
            whole.iloc[first]["resname"],
            whole_labels[first],
            len(suspects),
        )
    kept = residues.drop(index=whole.index[wrong])
    done = ResnameCheck(int(wrong.sum()), len(labels) + len(whole_labels), len(suspects), True)
    return kept, done
