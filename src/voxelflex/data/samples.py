"""Sample metadata as flat numpy arrays, shared with loader workers without per-worker dicts.

Residues are grouped by domain and samples by residue (CSR-style offsets), so a worker that
reads one domain's voxels finds every temperature of every residue by slicing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from voxelflex.data.temperature import TemperatureScaler


def _offsets(starts: np.ndarray, total: int) -> np.ndarray:
    return np.append(np.flatnonzero(starts), total).astype(np.int64)


@dataclass(frozen=True)
class SampleIndex:
    domain_ids: np.ndarray  # (D,) str
    domain_res: np.ndarray  # (D+1,) residue offsets per domain
    res_chain: np.ndarray  # (R,) str
    res_key: np.ndarray  # (R,) str, the voxel key ("52A")
    res_samples: np.ndarray  # (R+1,) sample offsets per residue
    temp_scaled: np.ndarray  # (S,) float32
    target: np.ndarray  # (S,) float32, NaN where unknown
    row: np.ndarray  # (S,) int64, the sample's row in the table it came from

    @classmethod
    def from_table(
        cls, table: pd.DataFrame, scaler: TemperatureScaler, temp_col: str = "raw_temp"
    ) -> SampleIndex:
        """`table` needs domain_id, chain_id, resid_str, `temp_col`; target_rmsf if known.
        `row` refers to positions in `table` as given."""
        t = table.reset_index(drop=True)
        order = _grouped_order(t, temp_col)
        t = t.iloc[order]
        dom = t["domain_id"].to_numpy().astype(str)
        chain = t["chain_id"].to_numpy().astype(str)
        key = t["resid_str"].to_numpy().astype(str)
        n = len(t)
        new_dom = np.ones(n, dtype=bool)
        new_dom[1:] = dom[1:] != dom[:-1]
        new_res = new_dom.copy()
        new_res[1:] |= (chain[1:] != chain[:-1]) | (key[1:] != key[:-1])
        res_first = np.flatnonzero(new_res)
        target = (
            t["target_rmsf"].to_numpy(dtype=np.float32)
            if "target_rmsf" in t
            else np.full(n, np.nan, dtype=np.float32)
        )
        return cls(
            domain_ids=dom[new_dom],
            domain_res=_offsets(new_dom[new_res], len(res_first)),
            res_chain=chain[res_first],
            res_key=key[res_first],
            res_samples=_offsets(new_res, n),
            temp_scaled=scaler.scale(t[temp_col].to_numpy()),
            target=target,
            row=order.astype(np.int64),
        )

    @property
    def n_domains(self) -> int:
        return len(self.domain_ids)

    @property
    def n_residues(self) -> int:
        return len(self.res_key)

    @property
    def n_samples(self) -> int:
        return len(self.row)


def _grouped_order(t: pd.DataFrame, temp_col: str) -> np.ndarray:
    """Row order with each domain's rows together, then each residue's, then by temperature;
    first-appearance order of domains and residues is kept (the table's own resid order)."""
    dom_code = pd.factorize(t["domain_id"])[0]
    res_code = pd.factorize(
        t["domain_id"].astype(str)
        + "\x00"
        + t["chain_id"].astype(str)
        + "\x00"
        + t["resid_str"].astype(str)
    )[0]
    return np.lexsort((t[temp_col].to_numpy(), res_code, dom_code))


def read_master_samples(uri: str, splits: tuple[str, ...] | None = None) -> pd.DataFrame:
    """The preprocess table, optionally only some splits; a clear error when it is missing."""
    from pipekit.errors import InputDataError
    from pipekit.uri import open_uri

    try:
        with open_uri(uri, "rb") as fh:
            table = pd.read_parquet(fh)
    except FileNotFoundError:
        raise InputDataError(f"{uri} not found: run `voxelflex preprocess` first") from None
    if splits is not None:
        table = table.loc[table["split"].isin(splits)].reset_index(drop=True)
    return table
