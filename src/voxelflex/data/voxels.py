"""Voxel sources behind one interface: the aposteriori HDF5 and the packed store.

A source lists residues (domain, chain, residue key) and reads one domain's residues as
channel-first uint8 grids. Sources are pickled into DataLoader workers before they read, so
they hold only their URI until first use and open their file handle inside each process.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Protocol

import h5py
import numpy as np
import pandas as pd

from pipekit.errors import InputDataError
from pipekit.progress import progress
from pipekit.uri import (
    is_local,
    local_path,
    open_scattered,
    storage_failure,
)

log = logging.getLogger(__name__)

GRID = 21
CHANNELS = ("C", "N", "O", "CA", "CB")
HDF5_SHAPE = (GRID, GRID, GRID, len(CHANNELS))  # aposteriori: channel-last on disk
VOXEL_SHAPE = (len(CHANNELS), GRID, GRID, GRID)  # what the model sees: channel-first
SYNTHETIC_ATTR = "synthetic"  # voxel file attribute: what made the data, said in reports


class VoxelSource(Protocol):
    uri: str

    def domain_ids(self) -> list[str]: ...

    def list_residues(self, domains: list[str]) -> pd.DataFrame:
        """Columns domain_id, chain_id, resid_str for the listed domains present in the source."""
        ...

    def read_labels(self, domain: str, chain: str, resid_strs: list[str]) -> list[str | None]:
        """The residue name stored with each grid (None: not stored)."""
        ...

    def read_domain(
        self, domain_id: str, chain_ids: np.ndarray, resid_strs: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(voxels uint8 (n, 5, 21, 21, 21), ok bool (n,)); rows with ok False are unusable."""
        ...

    def close(self) -> None: ...


def to_channel_first(arr: np.ndarray) -> np.ndarray:
    """(21, 21, 21, 5) of bool/uint8/float -> contiguous uint8 (5, 21, 21, 21) of 0/1."""
    if arr.dtype != np.bool_:
        arr = arr != 0
    return np.ascontiguousarray(arr.view(np.uint8).transpose(3, 0, 1, 2))


class HDF5VoxelSource:
    """`file[domain_id][chain_id][resid_str]` datasets, one per residue (aposteriori)."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self._file: h5py.File | None = None
        self._fh: Any = None
        self._warned_shapes = 0
        self._pid = os.getpid()

    def __getstate__(self) -> dict[str, Any]:
        return {"uri": self.uri, "_file": None, "_fh": None, "_warned_shapes": 0, "_pid": 0}

    @property
    def file(self) -> h5py.File:
        if self._pid != os.getpid():
            # a forked DataLoader worker: the parent's handles (HDF5 over an s3fs file bound
            # to the parent's event loop) are not ours to use or close; open our own
            self._file, self._fh, self._pid = None, None, os.getpid()
        if self._file is None:
            try:
                if is_local(self.uri):
                    self._file = h5py.File(local_path(self.uri), "r")
                else:
                    self._fh = open_scattered(self.uri)
                    self._file = h5py.File(self._fh, "r")
            except Exception as exc:  # h5py, fsspec and the S3 client each raise their own
                what, advice = storage_failure(
                    exc, "is it an HDF5 file? copy it again if it is damaged"
                )
                what = f"cannot open voxel HDF5 {self.uri}: {what}; {advice}"
                raise InputDataError(what) from None
        return self._file

    def domain_ids(self) -> list[str]:
        return list(self.file.keys())

    def list_residues(self, domains: list[str]) -> pd.DataFrame:
        names: list[str] = []  # (domain, chain) pairs in listing order
        chains: list[str] = []
        sizes: list[int] = []
        res_col: list[str] = []
        for domain in progress(domains, desc="listing voxel residues", unit="domain"):
            if domain not in self.file:
                continue
            group = self.file[domain]
            for chain in _members(self.uri, group, f"/{domain}", "chains"):
                keys = list(_members(self.uri, group[chain], f"/{domain}/{chain}", "residues"))
                names.append(domain)
                chains.append(chain)
                sizes.append(len(keys))
                res_col.extend(keys)
        # Arrow-backed strings built once; the repeated names by index, not by copies
        pair = np.repeat(np.arange(len(names)), sizes)
        return pd.DataFrame(
            {
                "domain_id": pd.array(names, dtype="str").take(pair),
                "chain_id": pd.array(chains, dtype="str").take(pair),
                "resid_str": pd.array(res_col, dtype="str"),
            }
        )

    def read_labels(self, domain: str, chain: str, resid_strs: list[str]) -> list[str | None]:
        # one metadata read per residue (remote where the file is): callers read a few.
        # h5py's low-level calls: the object wrappers cost more than the read itself
        fid = self.file.id
        out: list[str | None] = []
        for key in resid_strs:
            try:
                oid = h5py.h5o.open(fid, f"{domain}/{chain}/{key}".encode())
            except KeyError:
                out.append(None)
                continue
            if not h5py.h5a.exists(oid, b"label"):
                out.append(None)
                continue
            attr = h5py.h5a.open(oid, b"label")
            value = np.empty(attr.shape, dtype=attr.dtype)
            attr.read(value)
            item = value.item() if value.shape == () else value.ravel()[0]
            out.append(item.decode() if isinstance(item, bytes) else str(item))
        return out

    def read_domain(
        self, domain_id: str, chain_ids: np.ndarray, resid_strs: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        n = len(resid_strs)
        out = np.zeros((n, *VOXEL_SHAPE), dtype=np.uint8)
        ok = np.zeros(n, dtype=bool)
        try:
            group = self.file[domain_id]
        except KeyError:
            log.warning(
                "domain %s is not in voxel file %s; its residues are skipped", domain_id, self.uri
            )
            return out, ok
        for i, (chain, key) in enumerate(zip(chain_ids, resid_strs, strict=True)):
            try:
                ds = group[str(chain)][str(key)]
            except KeyError:
                log.warning("residue %s/%s/%s missing from %s", domain_id, chain, key, self.uri)
                continue
            if not isinstance(ds, h5py.Dataset) or ds.shape != HDF5_SHAPE:
                self._warn_shape(domain_id, chain, key, getattr(ds, "shape", "a group"))
                continue
            try:
                out[i] = to_channel_first(ds[()])
            except Exception as exc:  # a corrupt chunk, or the storage service gone
                what, advice = storage_failure(exc, "the file is damaged: copy or re-create it")
                raise InputDataError(
                    f"voxel HDF5 {self.uri}: residue {domain_id}/{chain}/{key} cannot be read: "
                    f"{what}; {advice}"
                ) from None
            ok[i] = True
        return out, ok

    def _warn_shape(self, domain: str, chain: Any, key: Any, shape: Any) -> None:
        self._warned_shapes += 1
        if self._warned_shapes == 6:
            log.warning("more residues with a wrong voxel shape in %s: listed at DEBUG", self.uri)
        log.log(
            logging.WARNING if self._warned_shapes <= 5 else logging.DEBUG,
            "skipping residue %s/%s/%s: voxel shape %s, expected %s",
            domain,
            chain,
            key,
            shape,
            HDF5_SHAPE,
        )

    def close(self) -> None:
        if self._pid != os.getpid():  # inherited from the parent: not ours to close
            self._file, self._fh = None, None
            return
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def _members(uri: str, node: Any, path: str, what: str) -> Any:
    """A group's member names; a dataset where the layout has a group is a one-line error
    (file[domain][chain][residue]: e.g. a file written with two levels swapped)."""
    if not isinstance(node, h5py.Group):
        raise InputDataError(
            f"voxel HDF5 {uri}: {path} is a dataset where the layout has a group of {what} "
            "(file[domain][chain][residue] = (21, 21, 21, 5) grid)"
        )
    return node.keys()
