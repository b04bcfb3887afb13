"""A cheap content fingerprint of input files and folders, for pipeline cache keys.

KFP caches a step on its inputs; for a step whose inputs are URIs, that is the URI strings,
so a file rewritten in place would be served from the cache forever. The fingerprint task
feeds the step this digest instead: per file its size and what the store says of its content
(an object store's ETag or checksum, else the modification time), never the bytes, so it
costs one listing however large the files. A folder (a packed store) counts every file in it.
Where a store says nothing of content (no ETag, checksum or time), today's date stands in:
such inputs are cached for a day at most.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from typing import Any

from fsspec.core import url_to_fs

from pipekit.errors import InputDataError

log = logging.getLogger(__name__)

CONTENT_KEYS = ("ETag", "etag", "checksum", "md5", "crc32c", "mtime", "LastModified", "updated")


def _describe(info: dict[str, Any]) -> dict[str, Any] | None:
    """Size and the first content marker the store gives; None where it gives none."""
    for key in CONTENT_KEYS:
        if info.get(key) not in (None, ""):
            return {"size": info.get("size"), key: str(info[key])}
    return None


def fingerprint(uris: list[str]) -> str:
    """A short hex digest that changes when any of `uris` (files or folders) changes."""
    parts: list[Any] = []
    undated = []
    for uri in uris:
        if not uri:
            parts.append(None)
            continue
        fs, path = url_to_fs(uri)
        try:
            info = fs.info(path)
        except FileNotFoundError:
            raise InputDataError(f"input not found: {uri}") from None
        if info.get("type") == "directory":
            files = fs.find(path, detail=True)
            entries = {name[len(path) :]: _describe(i) for name, i in sorted(files.items())}
        else:
            entries = {"": _describe(info)}
        if any(v is None for v in entries.values()):
            undated.append(uri)
        parts.append([uri, entries])
    if undated:
        log.info("no content marker for %s: cached for today (%s) only", undated, _today())
        parts.append(_today())
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
    return digest[:16]


def content_digest(uri: str, block: int = 1 << 24) -> dict[str, Any]:
    """Size and SHA-256 of one file's bytes, streamed. Where a file is rebuilt from the same
    bytes but is a new copy (the KFP launcher downloads a step's inputs afresh for every
    attempt), its time changes and this does not: the identity of an input a step's own
    partial work was made from."""
    fs, path = url_to_fs(uri)
    h = hashlib.sha256()
    size = 0
    with fs.open(path, "rb") as fh:
        while chunk := fh.read(block):
            h.update(chunk)
            size += len(chunk)
    return {"size": size, "sha256": h.hexdigest()}


def _today() -> str:
    return time.strftime("%Y-%m-%d", time.gmtime())
