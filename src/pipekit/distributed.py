"""Data-parallel runs under `torchrun` (one process per GPU, on one node or many).

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK for each process (and reads its own PET_*
variables, which Kubeflow Trainer's torch runtime sets, so no rendezvous flags are needed).
Without them, or with WORLD_SIZE 1, everything here is a no-op and a step runs as one
process. Collectives use NCCL on GPUs and gloo on CPUs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

import numpy as np
import torch
import torch.distributed as dist

from pipekit.device import resolve_device
from pipekit.progress import set_progress

log = logging.getLogger(__name__)

# how long a collective may wait for a slow or dead rank before the job fails (seconds)
ENV_TIMEOUT = "PIPEKIT_DIST_TIMEOUT_S"
T = TypeVar("T")


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes checkpoints, histories, logs and metrics."""
        return self.rank == 0


SINGLE = Dist()  # one process, no process group


def from_env() -> Dist:
    env = os.environ
    return Dist(
        int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0))
    )


@contextmanager
def distributed(device_name: str) -> Iterator[tuple[Dist, torch.device]]:
    """This process's place in the job and its device; the process group lives as long as
    the block. Ranks other than 0 log warnings only and draw no progress bars."""
    d = from_env()
    device = resolve_device(device_name)
    if not d.active or dist.is_initialized():
        yield d, device
        return
    if device.type == "cuda":
        device = torch.device("cuda", d.local_rank)
        torch.cuda.set_device(device)
    timeout = timedelta(seconds=float(os.environ.get(ENV_TIMEOUT, 1800)))
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timeout)
    if not d.is_main:
        logging.getLogger().setLevel(logging.WARNING)
        set_progress(False)
    log.info("rank %d of %d on %s", d.rank, d.world_size, device)
    try:
        yield d, device
    finally:
        dist.destroy_process_group()


def barrier(d: Dist) -> None:
    if d.active:
        dist.barrier()


def all_gathered(d: Dist, value: T) -> list[T]:
    """Every rank's `value` (any picklable object), in rank order, on every rank."""
    if not d.active:
        return [value]
    out: list[T | None] = [None] * d.world_size
    dist.all_gather_object(out, value)
    return [v for v in out if v is not None]


def gather_arrays(d: Dist, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """Each array concatenated over all ranks in rank order, on every rank."""
    parts = all_gathered(d, arrays)
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(len(arrays)))
