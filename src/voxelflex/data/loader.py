"""On-demand voxel stream: chunks per worker, each voxel read once per epoch.

A chunk is a few domains of a per-residue HDF5, or one storage chunk of a packed store (read
and decompressed whole, the next one fetched while this one is used). Each worker takes
every W-th chunk (chunk order shuffled per epoch with a seed shared by all workers), reads
the chunk's residues, and feeds them through a shuffle buffer. Residues move in blocks, as
numpy arrays, from the read through the buffer to the batch: no Python work per residue.

Grids travel bit-packed (`np.packbits` of the channel-first grid: 5,789 bytes instead of
46,305), through the shuffle buffer, the batch and the copy to the device, and are unpacked
there (`to_device`): on a GPU that is nearly free, and the host side moves 8x fewer bytes.
A residue leaves the buffer with all of its temperatures; batches hold each residue's grid
once plus an index from samples to grids, so a voxel serving 5 temperatures is shipped and
encoded once. Memory is bounded by one chunk plus the buffer, whatever the dataset size.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
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
    """Cuts residues' samples into batches of exactly `batch_size` (the last may be short).

    Residues arrive in blocks (packed grids plus residue numbers) and are handled as arrays:
    each residue is a run of consecutive sample numbers (its temperatures), and a run that
    straddles a batch boundary is split, its grid going into both batches."""

    def __init__(self, index: SampleIndex, batch_size: int) -> None:
        self.index = index
        self.batch_size = batch_size
        self._bits = np.empty((0, packed.ROW_BYTES), dtype=np.uint8)
        self._starts = np.empty(0, dtype=np.int64)
        self._counts = np.empty(0, dtype=np.int64)

    def add(self, bits: np.ndarray, res: np.ndarray) -> Iterator[Batch]:
        starts = self.index.res_samples[res]
        self._bits = np.concatenate([self._bits, bits])
        self._starts = np.concatenate([self._starts, starts])
        self._counts = np.concatenate([self._counts, self.index.res_samples[res + 1] - starts])
        cum = np.cumsum(self._counts)
        done = 0  # samples of the pending residues already cut into batches
        first = 0  # first residue with samples left
        while len(cum) and cum[-1] - done >= self.batch_size:
            end = done + self.batch_size
            last = int(np.searchsorted(cum, end))  # the batch ends inside residue `last`
            before = int(cum[last - 1]) if last > 0 else 0
            take = end - max(before, done)  # samples of `last` in this batch
            yield self._cut(first, last, take)
            done = end
            first = last if self._counts[last] > 0 else last + 1
        self._keep_from(first)

    def _cut(self, first: int, last: int, take: int) -> Batch:
        """A batch of residues first..last, of which `last` gives only its first `take`
        pending samples; the rest of `last` stays pending."""
        starts = self._starts[first : last + 1]
        counts = self._counts[first : last + 1].copy()
        counts[-1] = take
        batch = self._make(self._bits[first : last + 1], starts, counts)
        self._starts[last] += take
        self._counts[last] -= take
        return batch

    def _keep_from(self, first: int) -> None:
        keep = slice(first, None)
        self._bits, self._starts, self._counts = (
            self._bits[keep].copy(),
            self._starts[keep].copy(),
            self._counts[keep].copy(),
        )

    def _make(self, bits: np.ndarray, starts: np.ndarray, counts: np.ndarray) -> Batch:
        idx = self.index
        total = int(counts.sum())
        voxel_index = np.repeat(np.arange(len(counts)), counts)
        # sample numbers: each run's start plus the position within the run
        offsets = np.cumsum(counts) - counts
        samples = np.repeat(starts, counts) + (np.arange(total) - np.repeat(offsets, counts))
        return {
            # a view: the pending array is replaced, never written, once batches are cut
            "voxel_bits": torch.from_numpy(bits),  # (R, ROW_BYTES) uint8
            "voxel_index": torch.from_numpy(voxel_index),  # (B,)
            "temperature": torch.from_numpy(idx.temp_scaled[samples]).unsqueeze(1),  # (B, 1)
            "target": torch.from_numpy(idx.target[samples]),  # (B,)
            "row": torch.from_numpy(idx.row[samples]),  # (B,)
        }

    def flush(self) -> Batch | None:
        if not len(self._counts):
            return None
        batch = self._make(self._bits, self._starts, self._counts)
        self._keep_from(len(self._counts))
        return batch


class _ShuffleBuffer:
    """Residues waiting to be emitted, in slots of two arrays (packed grids, residue numbers).

    Once more than `cap` are held, the excess leaves in one block of residues drawn at random
    from all held (without shuffling, in arrival order); arriving residues take the freed
    slots, so nothing is moved around inside the buffer. Memory: `cap` plus one arriving
    block of rows, as 5,789-byte packed grids."""

    def __init__(self, cap: int, shuffle: bool, rng: np.random.Generator) -> None:
        self.cap = cap if shuffle else 0
        self.shuffle = shuffle
        self.rng = rng
        self.bits = np.empty((0, packed.ROW_BYTES), dtype=np.uint8)
        self.res = np.empty(0, dtype=np.int64)
        self.used = np.empty(0, dtype=bool)
        self.n = 0
        self.peak = 0  # most residues held at once (memory bound, checked by tests)

    def add(self, bits: np.ndarray, res: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        free = np.flatnonzero(~self.used)
        if len(free) < len(res):
            # room for `cap` plus this block at once (the fill phase then copies nothing)
            old = len(self.used)
            extra = max(len(res) - len(free), self.cap + len(res) - old)
            self.bits = np.concatenate([self.bits, np.empty((extra, packed.ROW_BYTES), np.uint8)])
            self.res = np.concatenate([self.res, np.empty(extra, np.int64)])
            self.used = np.concatenate([self.used, np.zeros(extra, bool)])
            free = np.concatenate([free, np.arange(old, old + extra)])
        slots = free[: len(res)]  # in slot order, so unshuffled streams keep arrival order
        self.bits[slots] = bits
        self.res[slots] = res
        self.used[slots] = True
        self.n += len(res)
        self.peak = max(self.peak, self.n)
        return self._pop(self.n - self.cap) if self.n > self.cap else None

    def drain(self) -> tuple[np.ndarray, np.ndarray] | None:
        return self._pop(self.n) if self.n else None

    def _pop(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        held = np.flatnonzero(self.used)
        pick = self.rng.choice(held, size=k, replace=False) if self.shuffle else held[:k]
        self.used[pick] = False
        self.n -= k
        return self.bits[pick], self.res[pick]  # fancy indexing: copies


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

    def _items(self, units: list[np.ndarray]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Blocks of (packed grids, residue numbers) for the readable residues of `units`."""
        if self.plan is not None:
            yield from self._read_packed([int(k) for unit in units for k in unit])
            return
        idx = self.index
        for d in (d for unit in units for d in unit):
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
            yield packed.pack(grids[ok]), lo + np.flatnonzero(ok)

    def _read_packed(self, chunks: list[int]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        plan, source = self.plan, self.source
        assert plan is not None and isinstance(source, PackedVoxelSource)

        def fetch(k: int) -> np.ndarray:  # one GET (or file read) and one decompression
            rows = plan.rows[plan.offsets[k] : plan.offsets[k + 1]]
            return source.read_chunk(int(plan.chunk_ids[k]), rows)

        # the next chunk is fetched and decompressed in a thread (both release the GIL)
        # while this one's residues go through the buffer: object-store latency and
        # decompression overlap with batching; memory grows by one chunk
        with ThreadPoolExecutor(max_workers=1) as pool:
            ahead = pool.submit(fetch, chunks[0]) if chunks else None
            for i, k in enumerate(chunks):
                assert ahead is not None
                data = ahead.result()
                ahead = pool.submit(fetch, chunks[i + 1]) if i + 1 < len(chunks) else None
                lo, hi = plan.offsets[k], plan.offsets[k + 1]
                yield data[plan.rows[lo:hi]], plan.residues[lo:hi]  # a copy of the rows used

    def __iter__(self) -> Iterator[Batch]:
        worker, n_workers = self._shard()
        rng = np.random.default_rng([self.settings.seed, self.epoch, worker, 1])
        batcher = _Batcher(self.index, self.settings.batch_size)
        buffer = _ShuffleBuffer(self.settings.shuffle_buffer, self.settings.shuffle, rng)
        for bits, res in self._items(self.chunks()[worker::n_workers]):
            out = buffer.add(bits, res)
            if out is not None:
                yield from batcher.add(*out)
        out = buffer.drain()
        if out is not None:
            yield from batcher.add(*out)
        last = batcher.flush()
        if last is not None:
            yield last
        self.peak_buffered = buffer.peak


def make_loader(stream: VoxelStream, num_workers: int, pin_memory: bool = False) -> DataLoader:
    return DataLoader(
        stream,
        batch_size=None,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=False,  # workers are re-created per epoch and see set_epoch
        prefetch_factor=4 if num_workers > 0 else None,
    )


_SHIFTS = torch.arange(7, -1, -1, dtype=torch.uint8)  # np.packbits is big-endian in a byte


def unpack_bits_torch(bits: torch.Tensor) -> torch.Tensor:
    """(R, ROW_BYTES) packed uint8 -> (R, 5, 21, 21, 21) 0/1 uint8, on the tensor's device."""
    shifts = _SHIFTS.to(bits.device)
    flat = ((bits.unsqueeze(-1) >> shifts) & 1).reshape(len(bits), -1)[:, : packed.BITS]
    return flat.reshape(len(bits), *VOXEL_SHAPE)


def unpack_bits(bits: torch.Tensor) -> torch.Tensor:
    """Unpack where the tensor is: numpy's unpackbits on the CPU (torch's bit ops are slow
    there), torch ops on a GPU."""
    if bits.device.type == "cpu":
        return torch.from_numpy(packed.unpack(bits.numpy()))
    return unpack_bits_torch(bits)


def to_device(batch: Batch, device: torch.device) -> tuple[torch.Tensor, ...]:
    """Packed grids cross to the device and become float32 there, not on the CPU."""
    nb = device.type == "cuda"
    bits = batch["voxel_bits"].to(device, non_blocking=nb)
    voxels = unpack_bits(bits).float()  # (R, 5, 21, 21, 21)
    return (
        voxels,
        batch["voxel_index"].to(device, non_blocking=nb),
        batch["temperature"].to(device, non_blocking=nb),
        batch["target"].to(device, non_blocking=nb),
    )
