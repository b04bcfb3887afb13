"""How many CPU threads a step's torch ops use: the container's CPU limit, not the node's cores.

A Kubernetes CPU limit (and `docker run --cpus`) is a CFS quota: the container still sees
every core of the node, and torch starts one thread per core. Under a quota of a few cores
on a large node those threads are throttled in turn, each op waiting for the slowest. Under
`--cpus 1` on this 2-core machine an MLP training step ran 1.34x faster with the limit's
1 thread than with torch's own 2 (`bench/bench_cpu_limit.py`, 2026-12-07)."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

log = logging.getLogger(__name__)

CGROUP_V2 = Path("/sys/fs/cgroup/cpu.max")
CGROUP_V1 = (
    Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"),
    Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us"),
)


def cpu_quota(v2: Path = CGROUP_V2, v1: tuple[Path, Path] = CGROUP_V1) -> float | None:
    """Cores the cgroup's quota allows (1.5 for `150000 100000`), or None without a quota."""
    try:
        quota, period = v2.read_text().split()[:2]  # "max 100000" or "150000 100000"
    except (OSError, ValueError):
        try:
            quota, period = (p.read_text().strip() for p in v1)  # "-1" when unlimited
        except (OSError, ValueError):
            return None
    if quota in ("max", "-1") or not quota.isdigit() or not period.isdigit() or int(period) == 0:
        return None
    return int(quota) / int(period)


def cpu_limit(quota: float | None = None) -> int:
    """Threads worth running: the cores this process may run on (its affinity), fewer where
    the quota allows fewer (rounded up: a 1.5-core quota keeps 2 threads busy)."""
    cores = len(os.sched_getaffinity(0))
    quota = cpu_quota() if quota is None else quota
    return max(1, min(cores, math.ceil(quota))) if quota else cores


_CAPPED: set[str] = set()  # settings already reported as capped in this process


def worker_count(asked: int, key: str, quota: float | None = None) -> int:
    """Worker processes worth starting for setting `key` (asked: `asked`): at most
    `cpu_limit()`. Past the quota, CPU-bound workers only take turns on it, each holding its
    own buffers in memory. Reported once per setting per process (loaders start per epoch)."""
    limit = cpu_limit(quota)
    if asked <= limit:
        return asked
    if key not in _CAPPED:
        _CAPPED.add(key)
        log.info("%s: %d workers, the CPU limit (asked for %d)", key, limit, asked)
    return limit


def use_cpu_limit() -> int:
    """Caps torch's intra-op threads at `cpu_limit()`; OMP_NUM_THREADS, where set (torchrun
    sets 1 per rank), wins. Returns the thread count in use."""
    import torch

    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    limit = cpu_limit()
    if torch.get_num_threads() > limit:
        log.info(
            "CPU: %d torch threads, the container's CPU limit (torch chose %d)",
            limit,
            torch.get_num_threads(),
        )
        torch.set_num_threads(limit)
    return torch.get_num_threads()
