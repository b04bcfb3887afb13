"""One writer per run folder: the second `train` into a folder fails at once, naming the first.

- A local folder: an exclusive `flock` on `<run>/.pipekit.lock`. The kernel drops it when
  the holder exits, however it exits (`kill -9` too), so a crash never leaves it stale.
- Object storage: a lease object at the same key, created only if absent (S3 conditional
  write, `If-None-Match: *`), renewed by a background thread every `TTL_S / 3` seconds and
  deleted on exit. A holder that died stops renewing; once its lease has expired the next
  writer takes it over. A writer that names the same owner (`PIPEKIT_LOCK_OWNER`: a
  pipeline task's output URI, the same for every retry of that task) takes it over at once:
  a retried pod replaces the one that died, and must not wait out its lease.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from pipekit.errors import PipelineError
from pipekit.uri import ensure_dir, is_local, join_uri, local_path

log = logging.getLogger(__name__)

LOCK = ".pipekit.lock"
TTL_S = 120.0
OWNER_ENV = "PIPEKIT_LOCK_OWNER"


class RunFolderBusy(PipelineError):
    """Another process is writing the same run folder."""


def _holder(what: str) -> dict[str, Any]:
    host, pid = socket.gethostname(), os.getpid()
    return {
        "what": what,
        "pid": pid,
        "host": host,
        "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        # no owner named: this acquisition alone (never mistaken for a retry of another)
        "owner": os.environ.get(OWNER_ENV) or f"{host}:{pid}:{uuid.uuid4().hex}",
    }


def _describe(holder: dict[str, Any]) -> str:
    where = f"pid {holder.get('pid')} on {holder.get('host')}, since {holder.get('since')}"
    return f"{holder.get('what', '?')} ({where})"


def _busy(run_dir: str, holder: dict[str, Any]) -> RunFolderBusy:
    return RunFolderBusy(
        f"run folder {run_dir} is in use by {_describe(holder)}; wait for it to finish (in "
        f"object storage, a lease its holder could not release expires within {TTL_S:.0f} s) "
        "or write to another folder"
    )


@contextmanager
def run_lock(run_dir: str, what: str) -> Iterator[None]:
    """Hold the run folder for the block; RunFolderBusy if another writer holds it."""
    if is_local(run_dir):
        with _file_lock(local_path(run_dir), what):
            yield
    else:
        with _lease(run_dir, what):
            yield


@contextmanager
def _file_lock(run_dir: str, what: str) -> Iterator[None]:
    import fcntl

    ensure_dir(run_dir)
    path = os.path.join(run_dir, LOCK)
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            try:
                holder = json.loads(fh.read() or "{}")
            except json.JSONDecodeError:
                holder = {}
            raise _busy(run_dir, holder) from None
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps(_holder(what)))
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


@contextmanager
def _lease(run_dir: str, what: str) -> Iterator[None]:
    from fsspec.core import url_to_fs

    fs, root = url_to_fs(run_dir)
    key = join_uri(root, LOCK)
    me = _holder(what)

    def body() -> bytes:
        return json.dumps({**me, "expires": time.time() + TTL_S}).encode()

    for _ in range(2):  # a second try after taking over an expired lease
        try:
            fs.pipe_file(key, body(), mode="create")
            break
        except FileExistsError:
            try:
                held = json.loads(fs.cat_file(key))
            except (FileNotFoundError, json.JSONDecodeError):
                held = {"expires": 0}
            if held.get("owner") == me["owner"]:
                log.warning(
                    "run folder %s: a retry of %s takes over its lease", run_dir, me["owner"]
                )
            elif held.get("expires", 0) > time.time():
                raise _busy(run_dir, held) from None
            else:
                what = _describe(held)
                log.warning("run folder %s: taking over the expired lease of %s", run_dir, what)
            fs.rm_file(key)
    else:
        raise _busy(run_dir, {"what": "another writer, which took the expired lease first"})
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(TTL_S / 3):
            try:
                fs.pipe_file(key, body())
            except Exception as exc:  # a blip: the next renewal tries again
                log.warning("run folder %s: lease not renewed (%s)", run_dir, exc)

    thread = threading.Thread(target=renew, name="run-lease", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        with suppress(FileNotFoundError):
            fs.rm_file(key)
