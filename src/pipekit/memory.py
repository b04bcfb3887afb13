"""How much memory this process may use: the container's cgroup limit where there is one
(a Kubernetes pod's `resources.limits.memory`), else the machine's physical memory."""

from __future__ import annotations

import os
from pathlib import Path

CGROUP_FILES = (
    Path("/sys/fs/cgroup/memory.max"),  # cgroup v2
    Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"),  # cgroup v1
)


def physical_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def memory_limit(files: tuple[Path, ...] = CGROUP_FILES) -> int:
    """Bytes: the smaller of the cgroup's limit (v2 `max`, or v1's near-2^63 'unlimited',
    mean none) and the physical memory."""
    phys = physical_memory()
    for f in files:
        try:
            text = f.read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            return min(int(text), phys)
    return phys


def gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"
