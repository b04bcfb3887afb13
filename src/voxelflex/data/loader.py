"""On-demand voxel stream: chunks per worker, each voxel read once per epoch.

A chunk is a few domains of a per-residue HDF5, or one storage chunk of a packed store (read
and decompressed whole, its wanted rows unpacked one by one). Each worker takes every W-th
chunk (chunk order shuffled per epoch with a seed shared by all workers), reads the chunk's
residues, and feeds them through a shuffle buffer.
A residue leaves the buffer with all of its temperatures; batches hold each residue's uint8
grid once plus an index from samples to grids, so a voxel serving 5 temperatures is shipped
and encoded once. Memory is bounded by one chunk plus the buffer, whatever the dataset size.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from voxelflex.data import packed
from voxelflex.data.packed_source import PackedVoxelSource
from voxelflex.data.samples import SampleIndex
from voxelflex.data.voxels import VOXEL_SHAPE, VoxelSource

log = logging.getLogger(__name__)

Batch = dict[str, torch.Tensor]


@dataclass(frozen=True)
class StreamSettings:
    batch_size: int
    chunk_size: int  # domains per chunk
    shuffle: bool
    shuffle_buffer: int = 4096  # residues
    seed: int = 0


class _Batcher:
    """Packs residues' samples into batches of exactly `batch_size` (the last may be short)."""

    def __init__(self, index: SampleIndex, batch_size: int) -> None:
        self.index = index
        self.batch_size = batch_size
        self._grids: list[np.ndarray] = []
        self._samples: list[np.ndarray] = []
        self._n = 0

    def add(self, grid: np.ndarray, res: int) -> Iterator[Batch]:
        lo, hi = self.index.res_samples[res], self.index.res_samples[res + 1]
        while lo < hi:
            take = min(hi - lo, self.batch_size - self._n)
            self._grids.append(grid)
            self._samples.append(np.arange(lo, lo + take))
            self._n += take
            lo += take
            if self._n == self.batch_size:
                yield self.flush()

    def flush(self) -> Batch:
        idx = self.index
        samples = np.concatenate(self._samples)
        voxel_index = np.repeat(np.arange(len(self._grids)), [len(s) for s in self._samples])
        batch = {
            "voxels": torch.from_numpy(np.stack(self._grids)),  # (R, 5, 21, 21, 21) uint8
            "voxel_index": torch.from_numpy(voxel_index),  # (B,)
            "temperature": torch.from_numpy(idx.temp_scaled[samples]).unsqueeze(1),  # (B, 1)
            "target": torch.from_numpy(idx.target[samples]),  # (B,)
            "row": torch.from_numpy(idx.row[samples]),  # (B,)
        }
        self._grids, self._samples, self._n = [], [], 0
        return batch

    @property
    def pending(self) -> bool:
        return self._n > 0


class VoxelStream(IterableDataset):
    """Yields ready batches; use with `DataLoader(batch_size=None)` (see `make_loader`)."""

    def __init__(self, source: VoxelSource, index: SampleIndex, settings: StreamSettings) -> None:
        super().__init__()
        self.source = source
        self.index = index
        self.settings = settings
        self.epoch = 0
        # a packed store is read by storage chunks: map residues to rows once, here (the plan's
        # numpy arrays travel to the workers; the store's index does not)
        self.plan = source.plan(index) if isinstance(source, PackedVoxelSource) else None

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle for this epoch; call before creating the epoch's iterator."""
        self.epoch = epoch

    def chunks(self) -> list[np.ndarray]:
        """This epoch's read units in order: domain numbers, or plan chunk numbers."""
        n = self.index.n_domains if self.plan is None else self.plan.n_chunks
        order = np.arange(n)
        if self.settings.shuffle:
            order = np.random.default_rng([self.settings.seed, self.epoch]).permutation(order)
        size = self.settings.chunk_size if self.plan is None else 1
        return [order[i : i + size] for i in range(0, len(order), size)]

    def _shard(self) -> tuple[int, int]:
        info = get_worker_info()
        return (info.id, info.num_workers) if info is not None else (0, 1)

    def _read_chunk(self, unit: np.ndarray) -> Iterator[tuple[np.ndarray, int]]:
        if self.plan is not None:
            yield from self._read_packed(unit)
            return
        idx = self.index
        domains = unit
        for d in domains:
            lo, hi = idx.domain_res[d], idx.domain_res[d + 1]
            grids, ok = self.source.read_domain(
                str(idx.domain_ids[d]), idx.res_chain[lo:hi], idx.res_key[lo:hi]
            )
            if not ok.all():
                log.warning(
                    "domain %s: %d of %d residues unreadable, their samples skipped",
                    idx.domain_ids[d],
                    int((~ok).sum()),
                    hi - lo,
                )
            for i in np.flatnonzero(ok):
                # a copy, not a view: a view would keep the whole domain's array alive for
                # as long as any one of its residues waits in the shuffle buffer
                yield grids[i].copy(), int(lo + i)

    def _read_packed(self, unit: np.ndarray) -> Iterator[tuple[np.ndarray, int]]:
        plan = self.plan
        assert plan is not None and isinstance(self.source, PackedVoxelSource)
        for k in unit:
            lo, hi = plan.offsets[k], plan.offsets[k + 1]
            rows = plan.rows[lo:hi]
            data = self.source.read_chunk(int(plan.chunk_ids[k]), rows)  # one decompression
            for row, res in zip(rows, plan.residues[lo:hi], strict=True):
                # each grid is its own array: nothing keeps the whole chunk alive
                grid = np.unpackbits(data[row], count=packed.BITS).reshape(VOXEL_SHAPE)
                yield grid, int(res)

    def __iter__(self) -> Iterator[Batch]:
        worker, n_workers = self._shard()
        rng = np.random.default_rng([self.settings.seed, self.epoch, worker, 1])
        batcher = _Batcher(self.index, self.settings.batch_size)
        buffer: list[tuple[np.ndarray, int]] = []
        cap = self.settings.shuffle_buffer if self.settings.shuffle else 0
        for chunk in self.chunks()[worker::n_workers]:
            for item in self._read_chunk(chunk):
                buffer.append(item)
                while len(buffer) > cap:
                    yield from batcher.add(*_pop(buffer, rng, self.settings.shuffle))
        while buffer:
            yield from batcher.add(*_pop(buffer, rng, self.settings.shuffle))
        if batcher.pending:
            yield batcher.flush()


def _pop(buffer: list, rng: np.random.Generator, shuffle: bool) -> tuple[np.ndarray, int]:
    if not shuffle:  # without shuffling the buffer never holds more than one residue
        return buffer.pop()
    # swap a random element to the end: O(1) removal
    j = int(rng.integers(len(buffer)))
    buffer[j], buffer[-1] = buffer[-1], buffer[j]
    return buffer.pop()


def make_loader(stream: VoxelStream, num_workers: int, pin_memory: bool = False) -> DataLoader:
    return DataLoader(
        stream,
        batch_size=None,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=False,  # workers are re-created per epoch and see set_epoch
        prefetch_factor=4 if num_workers > 0 else None,
    )


def to_device(batch: Batch, device: torch.device) -> tuple[torch.Tensor, ...]:
    """uint8 grids cross to the device and become float32 there, not on the CPU."""
    nb = device.type == "cuda"
    voxels = batch["voxels"].to(device, non_blocking=nb).float()  # (R, 5, 21, 21, 21)
    return (
        voxels,
        batch["voxel_index"].to(device, non_blocking=nb),
        batch["temperature"].to(device, non_blocking=nb),
        batch["target"].to(device, non_blocking=nb),
    )
