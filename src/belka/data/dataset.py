"""The store streamed as batches: every selected molecule exactly once per pass, across
loader workers and DDP ranks, shuffled per epoch.

A pass is one virtual sequence of the selected molecules: shards in an order drawn for the
epoch, each shard's rows in an order drawn for (epoch, shard). The sequence is cut into one
contiguous block per consumer (rank x worker); a consumer reads only the shards its block
touches and mixes them in a shuffle buffer (`buffer_rows`: what `training.buffer_bytes` holds,
checked against the memory limit at start). Block sizes differ by at most one molecule, and
the shard row counts in the manifest give every consumer its block without reading a shard."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from belka.config.schema import SystemConfig, TrainingConfig
from belka.data.store import FIELDS, Store
from pipekit.cpus import worker_count
from pipekit.errors import ConfigError
from pipekit.loading import batch_loader
from pipekit.memory import gib, memory_limit

Batch = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Segment:
    shard: int
    start: int  # position in the shard's selected rows (in the epoch's order)
    stop: int


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([seed, *keys])


def plan(
    counts: list[int], consumer: int, consumers: int, epoch: int, seed: int, shuffle: bool
) -> list[Segment]:
    """The shard segments of one consumer's block of the pass (`counts`: selected rows per
    shard)."""
    order = _rng(seed, epoch).permutation(len(counts)) if shuffle else np.arange(len(counts))
    total = int(sum(counts))
    lo, hi = consumer * total // consumers, (consumer + 1) * total // consumers
    out, pos = [], 0
    for s in order:
        n = counts[s]
        a, b = max(lo, pos), min(hi, pos + n)
        if a < b:
            out.append(Segment(int(s), a - pos, b - pos))
        pos += n
    return out


class StoreStream(IterableDataset):
    """Batches (dicts of tensors: `tokens`, `ecfp`, `labels`, `mol_id`, `subset`,
    `shared`) of the molecules whose subset is in `subsets`."""

    def __init__(
        self,
        store: Store,
        subsets: tuple[int, ...],
        batch_size: int,
        *,
        shuffle: bool,
        seed: int = 0,
        buffer_size: int = 1 << 20,
        rank: int = 0,
        world_size: int = 1,
    ):
        self.store, self.subsets, self.batch_size = store, subsets, batch_size
        self.shuffle, self.seed, self.buffer_size = shuffle, seed, buffer_size
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.counts = [sum(s["by_subset"][k] for k in subsets) for s in store.shards]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        """Molecules this rank sees in a pass."""
        total = sum(self.counts)
        r, w = self.rank, self.world_size
        return (r + 1) * total // w - r * total // w

    def _segment(self, seg: Segment) -> dict[str, np.ndarray]:
        arrays = self.store.read(seg.shard)
        rows = np.flatnonzero(np.isin(arrays["subset"], self.subsets))
        if self.shuffle:
            rows = rows[_rng(self.seed, self.epoch, seg.shard).permutation(len(rows))]
        take = rows[seg.start : seg.stop]
        return {k: arrays[k][take] for k in FIELDS}

    def _mixed(self, pool: dict[str, np.ndarray], rng: np.random.Generator) -> dict:
        if not self.shuffle:
            return pool
        perm = rng.permutation(len(pool["mol_id"]))
        return {k: v[perm] for k, v in pool.items()}

    def _cut(self, pool: dict[str, np.ndarray], stop: int) -> Iterator[Batch]:
        for a in range(0, stop, self.batch_size):
            b = min(a + self.batch_size, stop)
            yield {k: torch.from_numpy(np.ascontiguousarray(v[a:b])) for k, v in pool.items()}

    def __iter__(self) -> Iterator[Batch]:
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info else (1, 0)
        consumer = self.rank * workers + worker
        segments = plan(
            self.counts, consumer, self.world_size * workers, self.epoch, self.seed, self.shuffle
        )
        rng = _rng(self.seed, self.epoch, 1 << 20, consumer)
        pool: dict[str, np.ndarray] | None = None
        for seg in segments:
            part = self._segment(seg)
            pool = part if pool is None else {k: np.concatenate([pool[k], part[k]]) for k in FIELDS}
            if len(pool["mol_id"]) >= self.buffer_size:
                pool = self._mixed(pool, rng)
                n_full = len(pool["mol_id"]) // self.batch_size * self.batch_size
                yield from self._cut(pool, n_full)
                pool = {k: v[n_full:] for k, v in pool.items()}
        if pool is not None and len(pool["mol_id"]):
            pool = self._mixed(pool, rng)
            yield from self._cut(pool, len(pool["mol_id"]))


MIXING_COPIES = 2  # a worker holds its pool and, while concatenating or permuting, a copy
MEMORY_SHARE = 0.8  # of the memory limit the buffers may take; the model and batches the rest


def row_bytes(store: Store) -> float:
    """Bytes a molecule takes in a worker's buffer (every field), from the first shard."""
    arrays = store.read(0)
    return sum(a.nbytes for a in arrays.values()) / max(len(arrays["mol_id"]), 1)


def buffer_rows(training: TrainingConfig, system: SystemConfig, store: Store) -> int:
    """Molecules per loader worker's shuffle buffer: `buffer_size`, or as many as
    `buffer_bytes` holds; refused in one line when the workers' buffers would not fit the
    memory limit (`system.memory_limit`, else the pod's)."""
    if not store.shards:
        return training.buffer_size or training.batch_size
    per = row_bytes(store)
    rows = training.buffer_size or max(training.batch_size, int(training.buffer_bytes // per))
    workers = max(worker_count(system.n_workers, "system.n_workers"), 1)
    need = workers * MIXING_COPIES * rows * per
    limit = system.memory_limit or memory_limit()
    if need > MEMORY_SHARE * limit:
        raise ConfigError(
            f"shuffle buffers need {gib(need)} ({workers} workers x {MIXING_COPIES} x {rows:,} "
            f"molecules x {per:.0f} B) of a {gib(limit)} memory limit (at most "
            f"{MEMORY_SHARE:.0%}): lower training.buffer_bytes (or buffer_size) or system.n_workers"
        )
    return rows


def make_loader(stream: StoreStream, workers: int, pin_memory: bool = False) -> DataLoader:
    return batch_loader(stream, workers, "system.n_workers", pin_memory)
