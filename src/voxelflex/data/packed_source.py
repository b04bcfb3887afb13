"""Reading the packed store as a voxel source: metadata from the parquet index, voxels by
whole chunks (one decompression serves every wanted residue in it)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipekit.errors import InputDataError
from pipekit.uri import storage_failure
from voxelflex.data import packed
from voxelflex.data.samples import SampleIndex
from voxelflex.data.voxels import VOXEL_SHAPE

log = logging.getLogger(__name__)

KEY = ["domain_id", "chain_id", "resid_str"]


@dataclass(frozen=True)
class ChunkPlan:
    """Which residues of a sample index each storage chunk serves, as flat numpy arrays
    (cheap to pickle into DataLoader workers): residues of plan chunk k are
    `residues[offsets[k]:offsets[k + 1]]`, at rows `rows[...]` within storage chunk
    `chunk_ids[k]`."""

    chunk_ids: np.ndarray
    offsets: np.ndarray
    residues: np.ndarray
    rows: np.ndarray

    @property
    def n_chunks(self) -> int:
        return len(self.chunk_ids)


REMIRROR = "re-create it with `voxelflex mirror` (a re-run rewrites missing chunks)"


class PackedVoxelSource:
    """A packed store (zarr or HDF5, local or object storage) behind the VoxelSource interface."""

    def __init__(self, uri: str) -> None:
        self.uri = uri.rstrip("/")
        self._array: packed.ChunkArray | None = None
        self._index: pd.DataFrame | None = None
        self._pid = os.getpid()

    def __getstate__(self) -> dict[str, Any]:
        # workers reopen the store themselves; the index stays behind (plans carry arrays)
        return {"uri": self.uri, "_array": None, "_index": None, "_pid": os.getpid()}

    @property
    def array(self) -> packed.ChunkArray:
        if self._pid != os.getpid():
            # a forked DataLoader worker: the parent's handle (an s3fs session bound to the
            # parent's event loop, an HDF5 file) is not ours to use or close; open our own
            self._array, self._pid = None, os.getpid()
        if self._array is None:
            try:
                array = packed.open_chunks(self.uri)
                attrs = array.attrs
            except InputDataError:
                raise
            except Exception as exc:
                raise self._open_error(exc) from None
            if attrs.get("format") != packed.FORMAT:
                raise InputDataError(f"{self.uri} is not a VoxelFlex packed voxel store")
            if attrs.get("format_version") != packed.FORMAT_VERSION:
                raise InputDataError(
                    f"{self.uri} has packed-store format {attrs.get('format_version')}; this "
                    f"version reads {packed.FORMAT_VERSION}: re-run `voxelflex mirror`"
                )
            if not attrs.get("complete"):
                raise InputDataError(
                    f"packed store {self.uri} is incomplete or unverified: re-run "
                    f"`voxelflex mirror --src {attrs.get('source')} --dst {self.uri}` to finish it"
                )
            self._array = array
        return self._array

    @property
    def index(self) -> pd.DataFrame:
        if self._index is None:
            self.array  # noqa: B018  (checks the store before its index is trusted)
            try:
                self._index = packed.read_index(self.uri)
            except Exception as exc:
                raise self._open_error(exc) from None
        return self._index

    def domain_ids(self) -> list[str]:
        return list(pd.unique(self.index["domain_id"]))

    def list_residues(self, domains: list[str]) -> pd.DataFrame:
        idx = self.index
        keep = idx["domain_id"].isin(set(domains)) & idx["valid"]
        return idx.loc[keep, KEY].reset_index(drop=True)

    def read_labels(self, domain: str, chain: str, resid_strs: list[str]) -> list[str | None]:
        return [None] * len(resid_strs)  # the packed index does not carry residue names

    def plan(self, index: SampleIndex) -> ChunkPlan:
        """Map each residue of `index` to its row, and group residues by storage chunk."""
        counts = np.diff(index.domain_res)
        wanted = pd.DataFrame(
            {
                "domain_id": np.repeat(index.domain_ids.astype(object), counts),
                "chain_id": index.res_chain.astype(object),
                "resid_str": index.res_key.astype(object),
                "res": np.arange(index.n_residues),
            }
        )
        found = wanted.merge(self.index.loc[self.index["valid"]], on=KEY, how="inner")
        if len(found) < len(wanted):
            log.warning(
                "%d of %d residues are not in packed store %s; their samples are skipped",
                len(wanted) - len(found),
                len(wanted),
                self.uri,
            )
        found = found.sort_values("row")
        rows = found["row"].to_numpy(np.int64)
        chunk = rows // self.array.chunk_rows
        chunk_ids, starts = np.unique(chunk, return_index=True)
        return ChunkPlan(
            chunk_ids=chunk_ids,
            offsets=np.append(starts, len(rows)).astype(np.int64),
            residues=found["res"].to_numpy(np.int64),
            rows=rows - chunk * self.array.chunk_rows,
        )

    def read_chunk(self, chunk_id: int, used: np.ndarray) -> np.ndarray:
        """One storage chunk's packed rows. A chunk that cannot be decoded, or where a row
        in `used` (rows within the chunk) is empty — a lost chunk reads as zeros, and every
        real residue has atoms — is an error naming the rows and domains."""
        array = self.array
        lo, hi = packed.chunk_bounds(chunk_id, array.n_rows, array.chunk_rows)
        try:
            rows = array.read_chunk(chunk_id)
        except Exception as exc:  # codec and store errors differ by backend
            what, advice = storage_failure(exc, REMIRROR)  # only corrupt data: re-mirror
            raise self._chunk_error(chunk_id, lo, hi, f"cannot be read: {what}", advice) from None
        empty = int((~rows[used].any(axis=1)).sum())
        if empty:
            raise self._chunk_error(chunk_id, lo, hi, f"has {empty} empty residue rows", REMIRROR)
        return rows

    def _open_error(self, exc: BaseException) -> InputDataError:
        what, advice = storage_failure(exc, REMIRROR)
        return InputDataError(f"packed store {self.uri} cannot be opened: {what}; {advice}")

    def _chunk_error(
        self, chunk_id: int, lo: int, hi: int, what: str, advice: str
    ) -> InputDataError:
        try:
            idx = packed.read_index(self.uri) if self._index is None else self._index
            doms = pd.unique(idx.loc[(idx["row"] >= lo) & (idx["row"] < hi), "domain_id"])
            names = ", ".join(map(str, doms[:10])) + (" ..." if len(doms) > 10 else "")
        except Exception:  # the message must come out even if the index is unreadable too
            names = "unknown (index unreadable)"
        return InputDataError(
            f"packed store {self.uri}: chunk {chunk_id} (rows {lo}-{hi - 1}, domains {names}) "
            f"{what}; {advice}"
        )

    def read_domain(
        self, domain_id: str, chain_ids: np.ndarray, resid_strs: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        n = len(resid_strs)
        out = np.zeros((n, *VOXEL_SHAPE), dtype=np.uint8)
        ok = np.zeros(n, dtype=bool)
        wanted = pd.DataFrame(
            {
                "domain_id": domain_id,
                "chain_id": np.asarray(chain_ids, dtype=object),
                "resid_str": np.asarray(resid_strs, dtype=object),
                "i": np.arange(n),
            }
        )
        found = wanted.merge(self.index.loc[self.index["valid"]], on=KEY, how="inner")
        chunk_rows = self.array.chunk_rows
        for chunk_id, group in found.groupby(found["row"] // chunk_rows):
            local = group["row"].to_numpy() - int(chunk_id) * chunk_rows
            rows = self.read_chunk(int(chunk_id), local)
            out[group["i"].to_numpy()] = packed.unpack(rows[local])
            ok[group["i"].to_numpy()] = True
        return out, ok

    def close(self) -> None:
        if self._pid != os.getpid():  # inherited from the parent: not ours to close
            self._array = None
        if self._array is not None:
            self._array.close()
            self._array = None
