"""What a training epoch reports besides its loss: the share of its time spent waiting for
the next batch (the data path is the bottleneck when it is large), and the GPU's peak
memory."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

import torch

T = TypeVar("T")
# an epoch record's measurements of time and memory, which differ between runs that compute
# the same thing (a resumed run's history equals an uninterrupted one's without them)
TIMINGS = frozenset({"samples_per_s", "pairs_per_s", "data_wait_fraction", "peak_gpu_gib"})


class DataWait(Generic[T]):
    """Iterate `batches`, adding up the time each `next` takes. The loop's own work ends
    with a host sync (a loss read back), so time on the GPU is not counted as waiting."""

    def __init__(self, batches: Iterable[T]) -> None:
        self.batches = batches
        self.wait = 0.0
        self.start = time.perf_counter()

    def __iter__(self) -> Iterator[T]:
        self.start, self.wait = time.perf_counter(), 0.0
        it = iter(self.batches)
        while True:
            t = time.perf_counter()
            try:
                item = next(it)
            except StopIteration:
                return
            self.wait += time.perf_counter() - t
            yield item

    @property
    def fraction(self) -> float:
        """Waiting over the time since iteration began."""
        elapsed = time.perf_counter() - self.start
        return self.wait / elapsed if elapsed > 0 else 0.0


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_gib(device: torch.device) -> float | None:
    """The most memory torch's allocator held on `device` since the last reset (None off
    CUDA)."""
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**30
