"""Featurize molecules on `system.n_workers` processes (RDKit holds the GIL), at most as many
as the pod's CPU limit: past the quota, CPU-bound processes only take turns on it, each with
its own RDKit and buffers in memory."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

from pipekit.cpus import worker_count

T = TypeVar("T")
_STATE: dict[str, Any] = {}


def _init(factory: Callable[[], Any]) -> None:
    _STATE["worker"] = factory()


def _apply(chunk: Sequence[Any]) -> list[Any]:
    return [_STATE["worker"](x) for x in chunk]


class Pool:
    """`map(items)` applies the object `factory()` builds in each process to every item, in
    order, `chunk` items per task; with 0 or 1 workers it runs in this process."""

    def __init__(self, factory: Callable[[], Callable[[Any], T]], workers: int, chunk: int = 512):
        workers = worker_count(workers, "system.n_workers")
        self.factory, self.workers, self.chunk = factory, workers, chunk
        self._pool: ProcessPoolExecutor | None = None
        if workers > 1:
            self._pool = ProcessPoolExecutor(workers, initializer=_init, initargs=(factory,))
        else:
            _init(factory)

    def map(self, items: Sequence[Any]) -> Iterator[Any]:
        chunks = [items[i : i + self.chunk] for i in range(0, len(items), self.chunk)]
        results = self._pool.map(_apply, chunks) if self._pool else map(_apply, chunks)
        for part in results:
            yield from part

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
