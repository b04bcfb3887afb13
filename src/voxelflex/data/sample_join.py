"""Voxel residues joined to RMSF rows by integer keys: the sample table at mdCATH scale
(3.7M rows, 736k residues) in a few passes of numpy over int64 arrays, no string joins.

Domains and chains become codes of sorted categories (so code order is name order), a
residue's key is one int64 (domain, [chain,] resid), and every step (duplicates, one voxel
residue per key, the join, the output order) is a sort or a hash lookup of those keys.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from voxelflex.data.order import lex_order
from voxelflex.data.resnames import LabelReader, ResnameCheck, check
from voxelflex.data.rmsf_csv import OPTIONAL

_RESID_RE = r"^\s*(-?\d+)\s*([A-Za-z]?)\s*$"
_RESID_OFFSET = 1 << 31  # resid -> non-negative, below 2**32


@dataclass(frozen=True)
class Codes:
    """Sorted category names and each row's code (-1: not a category)."""

    names: np.ndarray
    codes: np.ndarray

    @classmethod
    def of(cls, values: pd.Series, names: list[str] | np.ndarray | None = None) -> Codes:
        # factorized first (one hash pass over the rows), then only the distinct values mapped
        found, distinct = pd.factorize(values)
        distinct = np.asarray(distinct, dtype=object)
        cats = np.asarray(sorted(set(distinct) if names is None else set(names)), dtype=object)
        where = {name: i for i, name in enumerate(cats)}
        lookup = np.array([where.get(v, -1) for v in distinct] + [-1], dtype=np.int64)
        return cls(cats, lookup[found])  # a missing value (code -1) maps to -1 too


def residue_key(domain: np.ndarray, chain: np.ndarray | None, n_chains: int, resid: np.ndarray):
    """One int64 per (domain, [chain], resid) code triple (-1 where a code is -1)."""
    unit = domain.astype(np.int64)
    if chain is not None:
        unit = unit * n_chains + chain
    key = (unit << 32) | (resid.astype(np.int64) + _RESID_OFFSET)
    key[domain < 0] = -1
    if chain is not None:
        key[chain < 0] = -1
    return key


def parse_residue_keys(residues: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Add integer `resid` and insertion code `icode` ("52A" -> 52, "A"); drop unparseable
    keys. Plain numbers (nearly all) are parsed in one vectorized pass (Arrow), the rest by
    pattern."""
    import pyarrow as pa
    import pyarrow.compute as pc

    text = pa.array(residues["resid_str"].astype(str), type=pa.string())
    plain = pc.match_substring_regex(text, r"^-?[0-9]{1,9}$").to_numpy(zero_copy_only=False)
    resid = np.zeros(len(residues), dtype=np.int64)
    icode = np.full(len(residues), "", dtype=object)
    resid[plain] = pc.cast(pc.filter(text, plain), pa.int64()).to_numpy()
    ok = plain.copy()
    rest = np.flatnonzero(~plain)
    if len(rest):
        parts = residues["resid_str"].astype(str).iloc[rest].str.extract(_RESID_RE)
        good = parts[0].notna().to_numpy()
        resid[rest[good]] = parts[0].to_numpy()[good].astype(np.int64)
        icode[rest[good]] = parts[1].fillna("").to_numpy()[good]
        ok[rest[good]] = True
    out = residues.loc[ok].copy()
    out["resid"] = resid[ok]
    out["icode"] = icode[ok]
    return out, int((~ok).sum())


def first_per_key(key: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Positions (into `key`) of the first row of each distinct key, taking rows in `order`
    (a permutation sorting `key`, ties in the wanted preference): ascending key order."""
    ranked = key[order]
    first = np.ones(len(ranked), dtype=bool)
    first[1:] = ranked[1:] != ranked[:-1]
    return order[first]


@dataclass(frozen=True)
class Joined:
    master: pd.DataFrame  # one row per sample, in (domain, chain, resid, temperature) order
    domain: np.ndarray  # each sample's domain, as a position in `domain_names`
    domain_names: np.ndarray  # the domains given, sorted
    residue: np.ndarray  # each sample's voxel residue (a position in the residues kept)
    counts: dict[str, int]
    checking: Future[tuple[pd.DataFrame, ResnameCheck]]  # the resname check, under way

    @property
    def n_residues(self) -> int:
        return len(pd.unique(self.residue))

    def checked(self) -> tuple[Joined, ResnameCheck]:
        """Wait for the resname check; the samples of residues whose name differs dropped."""
        agreeing, labels = self.checking.result()
        if not labels.dropped_residues:
            return self, labels
        good = np.zeros(int(self.residue.max()) + 1, dtype=bool)
        good[agreeing.index.to_numpy()] = True
        keep = good[self.residue]
        master = self.master.loc[keep].reset_index(drop=True)
        kept = replace(self, master=master, domain=self.domain[keep], residue=self.residue[keep])
        return kept, labels


def _pick_one(res: pd.DataFrame, key: np.ndarray, chain: np.ndarray) -> np.ndarray:
    """Positions of the residue kept per key: where a domain has several voxel residues for
    one key (insertion codes; several chains and no chain in the CSV), the plain one of the
    first chain, then the first insertion code."""
    icode_rank, _ = pd.factorize(res["icode"], sort=True)
    has_icode = (res["icode"] != "").to_numpy()
    return first_per_key(key, np.lexsort((icode_rank, chain, has_icode, key)))


def join_samples(
    residues: pd.DataFrame,
    rmsf: pd.DataFrame,
    domains: list[str],
    by_chain: bool,
    read_labels: LabelReader,
) -> Joined:
    """`residues` (domain_id, chain_id, resid_str, as listed) of `domains` with the cleaned
    `rmsf` rows: the samples, with what was skipped counted, and the resname check started
    (`Joined.checked` waits for it; `read_labels` is in use until then)."""
    counts: dict[str, int] = {}
    res, counts["unparseable_residue_keys"] = parse_residue_keys(residues)
    res = res.reset_index(drop=True)
    chains = Codes.of(res["chain_id"])
    dom = Codes.of(res["domain_id"], domains)
    dom_res = dom.codes
    chain_res = chains.codes if by_chain else None
    key_res = residue_key(dom_res, chain_res, len(chains.names), res["resid"].to_numpy())
    kept = _pick_one(res, key_res, chains.codes)
    counts["ambiguous_voxel_residues"] = len(res) - len(kept)
    res, key_res = res.iloc[kept].reset_index(drop=True), key_res[kept]
    dom_res, chain_codes = dom_res[kept], chains.codes[kept]

    dom_csv = Codes.of(rmsf["domain_id"], domains).codes
    chain_csv = None
    if by_chain:
        chain_csv = Codes.of(rmsf["chain_id"], chains.names).codes
    key_csv = residue_key(dom_csv, chain_csv, len(chains.names), rmsf["resid"].to_numpy())
    at = pd.Index(key_res).get_indexer(key_csv)  # the residue of each CSV row, or -1
    at[key_csv < 0] = -1
    rows = np.flatnonzero(at >= 0)
    first_row = np.full(len(res), -1, dtype=np.int64)
    first_row[at[rows][::-1]] = rows[::-1]  # the first CSV row of each matched residue
    used = np.flatnonzero(first_row >= 0)
    counts["voxel_residues_not_in_csv"] = len(res) - len(used)
    unmatched = key_csv[(key_csv >= 0) & (at < 0)]
    counts["csv_residues_not_in_voxels"] = len(pd.unique(unmatched))

    named = res.iloc[used][["domain_id", "chain_id", "resid_str"]]
    named["resname"] = rmsf["resname"].array.take(first_row[used])
    named.index = used
    # the labels are read (h5py, holding the GIL) in a thread while the table is put
    # together and written out (numpy and Arrow, without it), as if every residue agreed
    pool = ThreadPoolExecutor(max_workers=1)
    checking = pool.submit(check, named, read_labels)
    pool.shutdown(wait=False)
    pos = at[rows]
    resid = res["resid"].to_numpy()
    temp = rmsf["temperature_feature"].to_numpy()
    order = lex_order([dom_res[pos], chain_codes[pos], resid[pos], temp[rows]])
    every_row = order is None and len(rows) == len(rmsf)  # each CSV row, in its order
    if order is not None:
        rows, pos = rows[order], pos[order]
    master = _table(res, rmsf, rows, pos, every_row)
    return Joined(master, dom_res[pos], dom.names, pos, counts, checking)


def _table(
    res: pd.DataFrame, rmsf: pd.DataFrame, rows: np.ndarray, pos: np.ndarray, every_row: bool
) -> pd.DataFrame:
    """The sample table: CSV rows `rows` with the voxel residues `pos` they belong to. The
    Arrow-backed columns are taken as they are (no conversion of 3.7M strings), and not even
    taken where `every_row` (the CSV's rows are the table's, in order)."""

    def csv(col: str):
        values = rmsf[col].array
        return values if every_row else values.take(rows)

    table = pd.DataFrame(
        {
            "domain_id": csv("domain_id"),
            "chain_id": res["chain_id"].array.take(pos),
            "resid_str": res["resid_str"].array.take(pos),
            "resid": res["resid"].to_numpy()[pos],
            "resname": csv("resname"),
            "raw_temp": csv("temperature_feature"),
            "target_rmsf": csv("target_rmsf"),
        }
    )
    for col in OPTIONAL:
        if col in rmsf.columns:
            table[col] = csv(col)
    return table
