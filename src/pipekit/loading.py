"""A DataLoader over a dataset that yields whole batches (the systems' streams build them),
its workers no more than the pod's CPU limit allows (`pipekit.cpus.worker_count`)."""

from __future__ import annotations

from torch.utils.data import DataLoader, Dataset

from pipekit.cpus import worker_count


def batch_loader(
    dataset: Dataset, workers: int, key: str, pin_memory: bool = False, prefetch: int = 4
) -> DataLoader:
    """`dataset`'s batches on `workers` processes (setting `key`; 0: in this process), each
    worker `prefetch` batches ahead. Workers are made per epoch: they see the epoch's order."""
    workers = worker_count(workers, key)
    return DataLoader(
        dataset,
        batch_size=None,  # items are whole batches
        num_workers=workers,
        pin_memory=pin_memory,
        persistent_workers=False,
        prefetch_factor=prefetch if workers else None,
    )
