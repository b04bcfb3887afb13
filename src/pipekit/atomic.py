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
from typing import IO, Any

from pipekit.faults import crashpoint


def temp_name(path: str | Path) -> Path:
    """A sibling of `path` no other writer uses: `<name>.tmp-<pid>-<random>`."""
    path = Path(path)
    return path.with_name(f"{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def is_temp(path: str | Path) -> bool:
    """Whether `path` is a leftover of `replacing` (a writer killed before its rename)."""
    return ".tmp-" in Path(path).name


def remove_leftovers(folder: str | Path) -> int:
    """Delete what writers killed before their rename left in `folder` (local paths; object
    stores get whole uploads, never temporaries). Call it only when no writer is running."""
    from pipekit.uri import is_local, local_path

    if not is_local(str(folder)) or not Path(local_path(str(folder))).is_dir():
        return 0
    found = [p for p in Path(local_path(str(folder))).glob("*.tmp-*") if is_temp(p)]
    for leftover in found:
        leftover.unlink(missing_ok=True)
    return len(found)


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
    with replacing_uri(str(path), "w") as fh:
        fh.write(text)


@contextmanager
def replacing_uri(uri: str, mode: str = "wb") -> Iterator[IO[Any]]:
    """An open file for `uri` that appears whole or not at all: on a local path through
    `replacing`; in object storage the upload itself (one PUT on close) is all-or-nothing."""
    from pipekit.uri import ensure_dir, is_local, local_path, open_uri

    if not is_local(uri):
        with open_uri(uri, mode) as fh:
            yield fh
        return
    path = Path(local_path(uri))
    ensure_dir(str(path.parent))
    with replacing(path) as tmp, open(tmp, mode) as fh:
        yield fh
        fh.flush()


@contextmanager
def replacing_path(uri: str) -> Iterator[str]:
    """A local path for a library that writes files itself (h5py): it replaces `uri` whole
    when the block ends; in object storage the file is uploaded in one PUT."""
    import tempfile

    from pipekit.uri import ensure_dir, is_local, local_path

    if is_local(uri):
        path = Path(local_path(uri))
        ensure_dir(str(path.parent))
        with replacing(path) as tmp:
            yield str(tmp)
        return
    with tempfile.TemporaryDirectory() as tmp:
        staged = str(Path(tmp) / Path(uri).name)
        yield staged
        with open(staged, "rb") as fin, replacing_uri(uri, "wb") as fout:
            while block := fin.read(1 << 24):
                fout.write(block)
