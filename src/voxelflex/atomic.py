"""Crash-safe files: write beside the target under a unique name, fsync, rename over it.

A reader sees the old file or the new one, never half of one, after a kill at any point;
two writers of one file never share a temporary name (the last rename wins, whole).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from voxelflex.faults import crashpoint


def temp_name(path: str | Path) -> Path:
    """A sibling of `path` no other writer uses: `<name>.tmp-<pid>-<random>`."""
    path = Path(path)
    return path.with_name(f"{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def is_temp(path: str | Path) -> bool:
    """Whether `path` is a leftover of `replacing` (a writer killed before its rename)."""
    return ".tmp-" in Path(path).name


def fsync_path(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it is fsynced and renamed to `path` (and
    the folder fsynced, so the rename itself survives a power cut); on error it is removed."""
    path = Path(path)
    tmp = temp_name(path)
    try:
        yield tmp
        fsync_path(tmp)
        crashpoint("atomic.replace")  # the new file whole, not yet in place
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_path(path.parent)


def write_text(path: str | Path, text: str) -> None:
    """`path` holds exactly `text` afterwards, or (after a crash) what it held before."""
    with replacing(path) as tmp:
        tmp.write_text(text)
