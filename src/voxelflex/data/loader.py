"""On-demand voxel stream: chunks per worker, each voxel read once per epoch.

A read unit is a domain of a per-residue HDF5 (shuffled in chunks of `chunk_size` domains),
or one storage chunk of a packed store (read and decompressed whole with one request, the
next ones fetched while this one is used: one ahead locally, several from object storage).
Every epoch the units are put in one order, shuffled with a seed shared by all ranks and
workers (`set_epoch`), and the residues in that order are cut into
R x W contiguous shards of equal sample counts (R ranks, W loader workers): shard
rank * W + worker is read by that worker of that rank, feeding its residues through a
shuffle buffer. A unit cut by a shard boundary is read by both shards, each using its part:
at most R x W - 1 extra unit reads an epoch. Every shard cuts its samples into the same
number of batches (`batch_sizes`), so every rank takes the same number of steps (unequal
counts would hang DDP's collectives) and every sample is seen exactly once an epoch.
Residues move in blocks, as numpy arrays, from the read through the buffer to the batch:
no Python work per residue.

Grids travel bit-packed (`np.packbits` of the channel-first grid: 5,789 bytes instead of
46,305), through the shuffle buffer, the batch and the copy to the device, and are unpacked
there (`to_device`): on a GPU that is nearly free, and the host side moves 8x fewer bytes.
A residue leaves the buffer with all of its temperatures; batches hold each residue's grid
once plus an index from samples to grids, so a voxel serving 5 temperatures is shipped and
encoded once. Memory is bounded by the chunks in flight plus the buffer, whatever the dataset
size.
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from pipekit.errors import InputDataError
from pipekit.loading import batch_loader
from pipekit.uri import is_local
from voxelflex.data import packed
from voxelflex.data.packed_source import PackedVoxelSource
from voxelflex.data.samples import SampleIndex
from voxelflex.data.voxels import VOXEL_SHAPE, VoxelSource

log = logging.getLogger(__name__)

# storage chunks in flight ahead of the one being batched, per loader worker
READ_AHEAD_LOCAL = 1
READ_AHEAD_REMOTE = 4

Batch = dict[str, torch.Tensor]


@dataclass(frozen=True)
class StreamSettings:
    batch_size: int
    chunk_size: int  # domains per chunk
    shuffle: bool
    shuffle_buffer: int = 4096  # residues
    seed: int = 0
    rank: int = 0  # this process's rank among `world_size` (DDP); shards are rank x worker
    world_size: int = 1


def shard_bounds(samples: np.ndarray, n_shards: int) -> np.ndarray:
    """(n_shards + 1,) residue offsets cutting residues with `samples` samples each (in read
    order) into contiguous shards of near-equal sample counts: each is within one residue's
    samples (its temperatures) of the mean."""
    starts = np.cumsum(samples) - samples
    targets = np.arange(n_shards + 1) * (samples.sum() / n_shards)
    bounds = np.searchsorted(starts, targets, side="left")
    bounds[-1] = len(samples)
    return bounds


def batch_sizes(n: int, k: int, batch_size: int) -> np.ndarray:
    """`k` batch sizes (each 1..batch_size) summing to `n`: full batches first, the rest
    spread evenly. With k = ceil(n / batch_size) that is full batches and one short last."""
    if not 0 < k <= n <= k * batch_size:
        raise ValueError(f"cannot cut {n} samples into {k} batches of at most {batch_size}")
    full = k if batch_size == 1 else min(k, (n - k) // (batch_size - 1))
    rest, left = n - full * batch_size, k - full
    tail = rest // left + (np.arange(left) < rest % left) if left else np.zeros(0, np.int64)
    return np.concatenate([np.full(full, batch_size), tail]).astype(np.int64)


class _Batcher:
    """Cuts residues' samples into batches of the planned `sizes` (see `batch_sizes`).

    Residues arrive in blocks (packed grids plus residue numbers) and are handled as arrays:
    each residue is a run of consecutive sample numbers (its temperatures), and a run that
    straddles a batch boundary is split, its grid going into both batches."""

    def __init__(self, index: SampleIndex, sizes: np.ndarray) -> None:
        self.index = index
        self.sizes = sizes
        self.n_batches = 0  # batches cut so far
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
        while self.n_batches < len(self.sizes) and len(cum) and cum[-1] - done >= self._next:
            end = done + self._next
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
        self.n_batches += 1
        self._starts[last] += take
        self._counts[last] -= take
        return batch

    @property
    def _next(self) -> int:
        return int(self.sizes[self.n_batches])

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
        self.n_batches += 1
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

    def order(self) -> np.ndarray:
        """This epoch's read units in order: domain numbers, or plan chunk numbers. Shuffled,
        domains move in blocks of `chunk_size` neighbours in the file (reads stay local);
        the shuffle buffer mixes their residues."""
        n = self.index.n_domains if self.plan is None else self.plan.n_chunks
        if not self.settings.shuffle:
            return np.arange(n)
        size = self.settings.chunk_size if self.plan is None else 1
        blocks = np.random.default_rng([self.settings.seed, self.epoch]).permutation(-(-n // size))
        ids = (blocks[:, None] * size + np.arange(size)).ravel()
        return ids[ids < n]

    def _residues(self, unit: int) -> np.ndarray:
        if self.plan is None:
            return np.arange(self.index.domain_res[unit], self.index.domain_res[unit + 1])
        return self.plan.residues[self.plan.offsets[unit] : self.plan.offsets[unit + 1]]

    def shards(self, n_workers: int) -> tuple[list[list[tuple[int, int, int]]], np.ndarray]:
        """This epoch's R x W shards, as read pieces (unit, first, end residue within the
        unit), and each shard's sample count."""
        units = self.order()
        offsets = self.index.domain_res if self.plan is None else self.plan.offsets
        lengths = np.diff(offsets)[units]
        residues = (
            np.concatenate([self._residues(int(u)) for u in units])
            if len(units)
            else np.zeros(0, np.int64)
        )
        samples = np.diff(self.index.res_samples)[residues]
        bounds = shard_bounds(samples, self.settings.world_size * n_workers)
        cum = np.concatenate([[0], np.cumsum(samples)])
        unit_start = np.concatenate([[0], np.cumsum(lengths)])
        out = []
        for lo, hi in itertools.pairwise(bounds):
            # the units overlapping residues lo..hi of the epoch's order, clipped to them
            first = int(np.searchsorted(unit_start, lo, side="right")) - 1
            last = int(np.searchsorted(unit_start, hi, side="left"))
            out.append(
                [
                    (
                        int(units[i]),
                        int(max(lo, unit_start[i]) - unit_start[i]),
                        int(min(hi, unit_start[i + 1]) - unit_start[i]),
                    )
                    for i in range(max(first, 0), last)
                    if max(lo, unit_start[i]) < min(hi, unit_start[i + 1])
                ]
            )
        return out, cum[bounds[1:]] - cum[bounds[:-1]]

    def _shard(self) -> tuple[int, int]:
        """(this worker's shard number, workers per rank)."""
        info = get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        return self.settings.rank * n_workers + worker, n_workers

    def _items(self, pieces: list[tuple[int, int, int]]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Blocks of (packed grids, residue numbers) for the readable residues of `pieces`."""
        if self.plan is not None:
            yield from self._read_packed(pieces)
            return
        idx = self.index
        for d, a, b in pieces:
            lo, hi = idx.domain_res[d] + a, idx.domain_res[d] + b
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

    def _read_packed(
        self, pieces: list[tuple[int, int, int]]
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        plan, source = self.plan, self.source
        assert plan is not None and isinstance(source, PackedVoxelSource)

        def fetch(k: int) -> np.ndarray:  # one GET (or file read) and one decompression
            rows = plan.rows[plan.offsets[k] : plan.offsets[k + 1]]
            return source.read_chunk(int(plan.chunk_ids[k]), rows)

        # the next chunks are fetched and decompressed in threads (both release the GIL)
        # while this one's residues go through the buffer: object-store latency and
        # decompression overlap with batching. From object storage several are in flight
        # (a request's latency, not bandwidth, bounds one at a time); memory grows by that
        # many chunks
        depth = READ_AHEAD_LOCAL if is_local(source.uri) else READ_AHEAD_REMOTE
        with ThreadPoolExecutor(max_workers=depth) as pool:
            ahead: deque[Future[np.ndarray]] = deque()
            if pieces:
                # the first fetch alone, then the fan-out: the store's client and its session
                # are made by the first request, and two made at once leave one unclosed
                ahead.append(pool.submit(fetch, pieces[0][0]))
                wait(ahead)
            queued = len(ahead)
            for k, a, b in pieces:
                # `depth` fetches stay in flight while this chunk's residues are batched
                while queued < len(pieces) and len(ahead) <= depth:
                    ahead.append(pool.submit(fetch, pieces[queued][0]))
                    queued += 1
                data = ahead.popleft().result()
                lo, hi = plan.offsets[k] + a, plan.offsets[k] + b
                yield data[plan.rows[lo:hi]], plan.residues[lo:hi]  # a copy of the rows used

    def __iter__(self) -> Iterator[Batch]:
        shard, n_workers = self._shard()
        shards, counts = self.shards(n_workers)
        bs = self.settings.batch_size
        # every shard makes as many batches as the largest needs: equal steps on every rank
        n_batches = int(-(-counts.max() // bs)) if len(counts) else 0
        if self.settings.world_size > 1 and counts.min() < n_batches:
            raise InputDataError(
                f"{int(counts.sum())} samples cannot be split into {len(counts)} loader shards "
                f"({self.settings.world_size} ranks x {n_workers} workers) of {n_batches} "
                "batches each; use fewer ranks or workers"
            )
        mine = int(counts[shard])
        sizes = batch_sizes(mine, min(n_batches, mine), bs) if mine else np.zeros(0, np.int64)
        rng = np.random.default_rng([self.settings.seed, self.epoch, shard, 1])
        batcher = _Batcher(self.index, sizes)
        buffer = _ShuffleBuffer(self.settings.shuffle_buffer, self.settings.shuffle, rng)
        last: Batch | None = None
        for bits, res in self._items(shards[shard]):
            out = buffer.add(bits, res)
            if out is not None:
                for last in batcher.add(*out):
                    yield last
        out = buffer.drain()
        if out is not None:
            for last in batcher.add(*out):
                yield last
        tail = batcher.flush()
        if tail is not None:
            last = tail
            yield tail
        self.peak_buffered = buffer.peak
        if self.settings.world_size > 1 and batcher.n_batches < n_batches:
            # residues that could not be read left this shard short: repeat its last batch
            # so that every rank still takes the same number of steps
            log.warning(
                "loader shard %d: %d batch(es) short after unreadable residues; repeating "
                "its last batch to keep step counts equal across ranks",
                shard,
                n_batches - batcher.n_batches,
            )
            if last is None:
                raise InputDataError(f"loader shard {shard}: no readable residues")
            for _ in range(n_batches - batcher.n_batches):
                yield last


def make_loader(stream: VoxelStream, num_workers: int, pin_memory: bool = False) -> DataLoader:
    return batch_loader(stream, num_workers, "training.num_workers", pin_memory)


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
