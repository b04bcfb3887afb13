"""Pairs of cache rows -> batches of embeddings, read from the store row-wise.

A batch reads only the distinct rows its pairs need (sorted), so memory stays at one batch
whatever the cache's size: on local disk from a memory map of `emb`, in object storage with
ranged GETs of just those rows' bytes (adjacent rows, or rows a small gap apart, in one
range; see `RemoteRows`). From object storage a step that will read its rows many times
(training's epochs) or in random order first fetches every row its pairs use once, in sorted
runs, into memory (`stage_in_memory`) when they fit a share of the pod's memory: a batch's
scattered rows are each a request, a sorted pass over the rows is a few. Each DataLoader
worker opens the store itself (h5py handles and s3fs sessions do not survive a fork). The
order is drawn once per epoch from (seed, epoch).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import h5py
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from pipekit.errors import InputDataError
from pipekit.loading import batch_loader
from pipekit.memory import gib, memory_limit
from pipekit.progress import progress
from pipekit.uri import is_local, local_path, open_scattered

log = logging.getLogger(__name__)


def rows_of(pairs: pd.DataFrame, index: pd.DataFrame, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Cache rows of each pair's two proteins; an error listing IDs the cache lacks."""
    row = pd.Series(index["row"].to_numpy(np.int64), index=index["brc_fea_id"].astype(str))
    ids = pd.concat([pairs["brc_a"], pairs["brc_b"]]).astype(str)
    missing = sorted(set(ids) - set(row.index))
    if missing:
        shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
        raise InputDataError(
            f"{len(missing)} brc_fea_id(s) of {where} have no embedding in the cache: {shown} "
            "(run the embed step on the proteins these pairs were made from)"
        )
    a = row.loc[pairs["brc_a"].astype(str)].to_numpy()
    b = row.loc[pairs["brc_b"].astype(str)].to_numpy()
    return a, b


# rows fewer than this many bytes apart are fetched in one range (the gap read and dropped):
# about what a second request's headers would cost; the requests of a batch go out at once,
# so a wider gap would buy no time and cost bytes (random rows of a large cache are rarely
# close)
MERGE_GAP = 1 << 12


class RemoteRows:
    """Rows of a contiguous, uncompressed 2-D HDF5 dataset in object storage (the cache's
    `emb`), read by byte range: h5py reads only the file's metadata (in small blocks) to find
    where the data starts, then each request asks for exactly a run of rows. s3fs's default
    read-ahead (50 MB) fetched most of a store for every few rows instead."""

    def __init__(self, uri: str, name: str = "emb") -> None:
        from fsspec.core import url_to_fs

        self.fs, self.path = url_to_fs(uri)
        with (
            self.fs.open(self.path, "rb", cache_type="blockcache", block_size=1 << 16) as fh,
            h5py.File(fh, "r") as f,
        ):
            d = f[name]
            offset = d.id.get_offset()
            if offset is None or d.chunks is not None or d.compression is not None:
                raise ValueError(f"{uri}: {name} is not one contiguous uncompressed dataset")
            self.offset, self.dtype, self.shape = int(offset), d.dtype, d.shape
        self.row_bytes = int(self.shape[1]) * self.dtype.itemsize

    def __getitem__(self, rows: np.ndarray) -> np.ndarray:
        """The rows `rows` (sorted, distinct), in that order."""
        return self.read(rows, MERGE_GAP)

    def read(self, rows: np.ndarray, merge_gap: int) -> np.ndarray:
        """The rows `rows` (sorted, distinct), rows under `merge_gap` bytes apart in one range."""
        if len(rows) == 0:
            return np.empty((0, self.shape[1]), self.dtype)
        gap_rows = max(1, merge_gap // self.row_bytes)
        cut = np.flatnonzero(np.diff(rows) > gap_rows) + 1  # where a new range starts
        first = rows[np.r_[0, cut]]
        last = rows[np.r_[cut - 1, len(rows) - 1]] + 1
        starts = (self.offset + first * self.row_bytes).tolist()
        ends = (self.offset + last * self.row_bytes).tolist()
        blobs = self.fs.cat_ranges([self.path] * len(starts), starts, ends)
        span = np.frombuffer(b"".join(blobs), self.dtype).reshape(-1, self.shape[1])
        sizes = last - first
        at = np.cumsum(sizes) - sizes  # where each range starts in `span`
        wanted = np.diff(np.r_[0, cut, len(rows)])  # rows asked for in each range
        return span[rows - np.repeat(first - at, wanted)]


# staging reads the rows in sorted passes, each spanning at most this many bytes of the
# store (memory beyond the staged rows themselves: one pass's responses, gaps included),
# merging rows this far apart into one range: a pass is one bulk fetch, where a request
# saved is worth more than the few rows' bytes read between
STAGE_PASS_BYTES = 64 << 20
STAGE_MERGE_GAP = 1 << 18
# the staged rows may take this share of the pod's memory (the rest: the model, the batches
# in flight, DataLoader workers, which share the staged rows with the parent after the fork)
STAGE_MEMORY_SHARE = 0.25


class StagedRows:
    """Rows of an object-storage store fetched once, held in memory: `keys` (sorted cache
    rows) and `data` (their embeddings, in that order)."""

    def __init__(self, remote: RemoteRows, rows: np.ndarray) -> None:
        self.keys = rows  # sorted, distinct (as `stage_in_memory` makes them)
        self.data = np.empty((len(self.keys), remote.shape[1]), remote.dtype)
        span_rows = max(1, STAGE_PASS_BYTES // remote.row_bytes)
        bar = progress(total=len(self.keys), desc="fetch cache rows", unit="row")
        lo = 0
        while lo < len(self.keys):
            # a pass ends where the store's rows it spans would pass the bound: scattered
            # rows merged across their gaps cost memory by the span, not by the rows wanted
            hi = int(np.searchsorted(self.keys, self.keys[lo] + span_rows))
            self.data[lo:hi] = remote.read(self.keys[lo:hi], STAGE_MERGE_GAP)
            bar.update(hi - lo)
            lo = hi
        bar.close()

    def __getitem__(self, rows: np.ndarray) -> np.ndarray:
        """The rows `rows` (sorted, distinct, all staged), in that order."""
        return self.data[np.searchsorted(self.keys, rows)]


class PairBatches(Dataset):
    """Item i is batch i of the current epoch: (emb_a (B, D), emb_b (B, D), labels (B,))."""

    def __init__(
        self,
        store: str,
        rows_a: np.ndarray,
        rows_b: np.ndarray,
        labels: np.ndarray,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
    ) -> None:
        self.store = store
        self.rows_a, self.rows_b = rows_a, rows_b
        self.labels = labels.astype(np.float32)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        self._h5: Any = None
        self._order: tuple[int, np.ndarray] | None = None
        self.staged: StagedRows | None = None  # set by `stage_in_memory`

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-len(self.labels) // self.batch_size)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_h5": None, "_order": None}

    def _emb(self) -> np.ndarray | RemoteRows | StagedRows | h5py.Dataset:
        """The `emb` rows: on local disk a memory map of the contiguous dataset (the page
        cache serves repeated rows), in object storage the staged rows where they were
        fetched up front, else ranged reads of the rows wanted."""
        if self.staged is not None:
            return self.staged
        if self._h5 is None:
            if is_local(self.store):
                path = local_path(self.store)
                with h5py.File(path, "r") as f:
                    d = f["emb"]
                    offset = d.id.get_offset()
                    if offset is not None and d.chunks is None and d.compression is None:
                        self._h5 = np.memmap(path, d.dtype, "r", offset, d.shape)
                        return self._h5
                self._h5 = h5py.File(path, "r")["emb"]
            else:
                try:
                    self._h5 = RemoteRows(self.store)
                except ValueError:  # a chunked store (not ours): h5py through a block cache
                    self._h5 = h5py.File(open_scattered(self.store), "r")["emb"]
        return self._h5

    def order(self) -> np.ndarray:
        """This epoch's order of the pairs, drawn once per epoch (per worker process)."""
        if self._order is None or self._order[0] != self.epoch:
            n = len(self.labels)
            if self.shuffle:
                perm = np.random.default_rng((self.seed, self.epoch)).permutation(n)
            else:
                perm = np.arange(n)
            self._order = (self.epoch, perm)
        return self._order[1]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        idx = self.order()[i * self.batch_size : (i + 1) * self.batch_size]
        ra, rb = self.rows_a[idx], self.rows_b[idx]
        rows, inv = np.unique(np.concatenate([ra, rb]), return_inverse=True)
        emb = self._emb()[rows].astype(np.float32)  # (R, D), distinct rows only
        a, b = emb[inv[: len(idx)]], emb[inv[len(idx) :]]
        return torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(self.labels[idx])


def stage_in_memory(batches: list[PairBatches], share: float = STAGE_MEMORY_SHARE) -> bool:
    """Fetch every row the batches' pairs use from their object-storage store once, into
    memory, when they fit `share` of the pod's memory; then the batches read from there.
    True when staged; a local store (already a memory map) or rows too many stay as they are."""
    stores = {b.store for b in batches}
    if len(stores) != 1:
        raise ValueError(f"batches of several stores: {sorted(stores)}")
    store = stores.pop()
    if is_local(store):
        return False
    rows = np.unique(np.concatenate([r for b in batches for r in (b.rows_a, b.rows_b)]))
    try:
        remote = RemoteRows(store)
    except ValueError:  # a chunked store (not ours): read through h5py batch by batch
        return False
    need = len(rows) * remote.row_bytes
    budget = int(memory_limit() * share)
    if need > budget:
        log.info(
            "reading %s batch by batch: the %d rows its pairs use (%s) exceed %s, a share "
            "%.2f of this pod's memory",
            store,
            len(rows),
            gib(need),
            gib(budget),
            share,
        )
        return False
    t0 = time.perf_counter()
    staged = StagedRows(remote, rows)
    for b in batches:
        b.staged = staged
    log.info(
        "fetched the %d rows the pairs use (%s) from %s into memory in %.1f s",
        len(rows),
        gib(need),
        store,
        time.perf_counter() - t0,
    )
    return True


def loader(batches: PairBatches, num_workers: int) -> DataLoader:
    # in order (the dataset orders itself per epoch), two batches ahead per worker
    return batch_loader(batches, num_workers, "training.num_workers", prefetch=2)
