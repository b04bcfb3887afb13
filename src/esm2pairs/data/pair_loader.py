"""Pairs of cache rows -> batches of embeddings, read from the store row-wise.

A batch reads only the distinct rows its pairs need (sorted, one h5py selection), so memory
stays at one batch whatever the cache's size; each DataLoader worker opens the store itself
(h5py handles do not survive a fork). The order is reshuffled per epoch from (seed, epoch)."""

from __future__ import annotations

from typing import Any

import h5py
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from pipekit.errors import InputDataError
from pipekit.uri import is_local, local_path, open_uri


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

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-len(self.labels) // self.batch_size)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_h5": None}

    def _emb(self) -> h5py.Dataset | np.ndarray:
        """The `emb` rows: on local disk a memory map of the contiguous dataset (the page
        cache serves repeated rows), in object storage the dataset read through fsspec."""
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
                self._h5 = h5py.File(open_uri(self.store, "rb"), "r")["emb"]
        return self._h5

    def order(self) -> np.ndarray:
        n = len(self.labels)
        if not self.shuffle:
            return np.arange(n)
        return np.random.default_rng((self.seed, self.epoch)).permutation(n)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        idx = self.order()[i * self.batch_size : (i + 1) * self.batch_size]
        ra, rb = self.rows_a[idx], self.rows_b[idx]
        rows, inv = np.unique(np.concatenate([ra, rb]), return_inverse=True)
        emb = self._emb()[rows].astype(np.float32)  # (R, D), distinct rows only
        a, b = emb[inv[: len(idx)]], emb[inv[len(idx) :]]
        return torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(self.labels[idx])


def loader(batches: PairBatches, num_workers: int) -> DataLoader:
    return DataLoader(
        batches,
        batch_size=None,  # items are whole batches
        shuffle=False,  # the dataset orders itself per epoch
        num_workers=num_workers,
        persistent_workers=False,  # workers are made per epoch, with the epoch's order
    )
