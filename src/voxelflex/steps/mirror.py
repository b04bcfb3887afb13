"""Mirror: a per-residue voxel HDF5 -> the packed store (zarr v3 or HDF5, any fsspec URI).

Streaming and resumable. The row plan (`index.parquet`) is written first, from one listing of
the source; then each storage chunk is built from the source, written whole, and only then
marked done (`_progress/chunk-<i>.json`, with the checksums of the rows it holds). A re-run
with the same source reuses the plan and rewrites every chunk without a marker, so a chunk
half-written when the process died is never taken as complete. At the end every chunk is
read back and checked against the recorded checksums, per domain; only then is the store
marked complete, which readers require.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from fsspec.core import url_to_fs

from pipekit.atomic import remove_leftovers, replacing_uri
from pipekit.errors import InputDataError
from pipekit.faults import crashpoint
from pipekit.progress import progress
from pipekit.shards import shard_of  # noqa: F401 (the components' name for it)
from pipekit.shards import shard_specs as specs
from pipekit.uri import join_uri, open_uri, require_file
from voxelflex.data import packed
from voxelflex.data.voxels import HDF5VoxelSource

log = logging.getLogger(__name__)

DEFAULT_CHUNK_ROWS = 1024  # ~5.9 MB raw, ~0.2-1 MB compressed: whole-chunk reads stay cheap


@dataclass(frozen=True)
class MirrorResult:
    uri: str
    format: str
    n_rows: int
    n_domains: int
    n_chunks: int
    chunks_written: int  # by this run; fewer than n_chunks when it resumed
    invalid_rows: int  # residues whose source grid was unusable (kept as empty, flagged)
    bytes_stored: int
    complete: bool = True  # False after --plan-only or one --shard: a plain run finishes it


def destination(src: str, dst: str | None = None) -> str:
    """`dst`, or beside the source when empty: `x/voxels.hdf5` -> `x/voxels.packed`."""
    if dst:
        return dst
    stem = src.rstrip("/")
    for ext in (".hdf5", ".h5"):
        if stem.endswith(ext):
            stem = stem[: -len(ext)]
            break
    return stem + ".packed"


def shard_specs(writers: int) -> list[dict[str, int]]:
    """The pipeline's fan-out: one item per writer, for `dsl.ParallelFor`."""
    return specs(writers, "mirror_writers")


def headline_metrics(result: MirrorResult) -> dict[str, float]:
    return {
        "residues": result.n_rows,
        "domains": result.n_domains,
        "chunks": result.n_chunks,
        "chunks_written": result.chunks_written,
        "invalid_residues": result.invalid_rows,
        "bytes_per_residue": result.bytes_stored / max(result.n_rows, 1),
    }


def _fingerprint(uri: str) -> dict[str, Any]:
    """What identifies the source's content cheaply: size plus modification time or ETag."""
    fs, path = url_to_fs(uri)
    info = fs.info(path)
    changed = info.get("mtime") or info.get("LastModified") or info.get("ETag") or ""
    return {"size": int(info.get("size") or 0), "modified": str(changed)}


def residue_order(residues: pd.DataFrame) -> pd.DataFrame:
    """Rows in domain, chain, residue-number order (insertion codes after the plain number)."""
    parts = residues["resid_str"].str.extract(r"^\s*(-?\d+)\s*(\S*)\s*$")
    keyed = residues.assign(
        _num=pd.to_numeric(parts[0], errors="coerce").fillna(np.iinfo(np.int64).max),
        _icode=parts[1].fillna(""),
    )
    keyed = keyed.sort_values(["domain_id", "chain_id", "_num", "_icode", "resid_str"])
    out = keyed[["domain_id", "chain_id", "resid_str"]].reset_index(drop=True)
    out["row"] = np.arange(len(out), dtype=np.int64)
    out["valid"] = True
    return out


_MARKER = re.compile(r"chunk-(\d{8})\.json")


def _marker(dst: str, chunk: int) -> str:
    return join_uri(dst, packed.PROGRESS, f"chunk-{chunk:08d}.json")


def _segments(index: pd.DataFrame, lo: int, hi: int) -> list[tuple[str, int, int]]:
    """(domain, first row, end row) of each domain's stretch within rows [lo, hi)."""
    domains = index["domain_id"].to_numpy()[lo:hi]
    starts = np.flatnonzero(np.r_[True, domains[1:] != domains[:-1]])
    ends = np.r_[starts[1:], len(domains)]
    return [(str(domains[s]), lo + int(s), lo + int(e)) for s, e in zip(starts, ends, strict=True)]


def _digest(rows: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(rows).tobytes()).hexdigest()


def _build_chunk(
    source: HDF5VoxelSource, index: pd.DataFrame, lo: int, hi: int
) -> tuple[np.ndarray, dict[str, Any]]:
    rows = np.zeros((hi - lo, packed.ROW_BYTES), dtype=np.uint8)
    chains = index["chain_id"].to_numpy()
    keys = index["resid_str"].to_numpy()
    segments: list[Any] = []
    invalid: list[Any] = []
    for domain, a, b in _segments(index, lo, hi):
        grids, ok = source.read_domain(domain, chains[a:b], keys[a:b])
        part = packed.pack(grids)
        part[~ok] = 0
        rows[a - lo : b - lo] = part
        invalid.extend(int(r) for r in np.flatnonzero(~ok) + a)
        segments.append([domain, a, b, _digest(part)])
    return rows, {"segments": segments, "invalid_rows": invalid}


def _done_chunks(dst: str) -> set[int]:
    fs, path = url_to_fs(join_uri(dst, packed.PROGRESS))
    if not fs.exists(path):
        return set()
    # whole markers only: a writer killed before its rename leaves `<marker>.tmp-*` behind
    found = (_MARKER.fullmatch(p.rsplit("/", 1)[-1]) for p in fs.ls(path, detail=False))
    return {int(m.group(1)) for m in found if m}


def _read_marker(dst: str, chunk: int) -> dict[str, Any]:
    with open_uri(_marker(dst, chunk), "r") as fh:
        return json.load(fh)


def _start(
    src: str, dst: str, fmt: str, chunk_rows: int, fingerprint: dict, overwrite: bool
) -> tuple[packed.ChunkArray, pd.DataFrame]:
    """Open the store to resume, or plan and create it afresh."""
    if not overwrite and packed.store_format(dst):
        try:
            array = packed.open_chunks(dst, "r+")  # the store's own format
        except InputDataError:
            array = None  # died before the array was made: plan again
        if array is not None:
            attrs = array.attrs
            if attrs.get("source_fingerprint") != fingerprint:
                raise InputDataError(
                    f"{dst} was mirrored from a different version of {src} (size/modification "
                    "time differ): pass --overwrite to rebuild it"
                )
            if attrs.get("chunk_rows") != chunk_rows:
                log.info("resuming with the store's chunk size %d", attrs["chunk_rows"])
            return array, packed.read_index(dst)
    source = HDF5VoxelSource(src)
    index = residue_order(source.list_residues(source.domain_ids()))
    source.close()
    if index.empty:
        raise InputDataError(f"voxel file {src} holds no residues")
    fs, path = url_to_fs(join_uri(dst, packed.PROGRESS))
    if fs.exists(path):
        fs.rm(path, recursive=True)
    packed.write_table(index, join_uri(dst, packed.INDEX), packed.INDEX_SCHEMA)
    attrs = packed.store_attrs(src, fingerprint, len(index), chunk_rows)
    if fmt == "hdf5":
        return packed.HDF5Chunks.create(dst, len(index), chunk_rows, attrs), index
    return packed.ZarrChunks.create(dst, len(index), chunk_rows, attrs), index


def verify(array: packed.ChunkArray, index: pd.DataFrame, markers: list[dict]) -> pd.DataFrame:
    """Read every chunk back and compare each domain's rows with the checksums taken from
    the source; returns the per-domain table (domain_id, first_row, n_rows, sha256)."""
    expected: dict[str, list[str]] = {}
    spans: dict[str, list[int]] = {}
    for chunk, marker in enumerate(markers):
        lo = chunk * array.chunk_rows
        got = array.read_chunk(chunk)
        for domain, a, b, digest in marker["segments"]:
            if _digest(got[a - lo : b - lo]) != digest:
                raise InputDataError(
                    f"mirror check failed: domain {domain} rows {a}-{b - 1} (chunk {chunk}) "
                    "differ from the source; re-run `voxelflex mirror` to rewrite them"
                )
            expected.setdefault(domain, []).append(digest)
            span = spans.setdefault(domain, [a, b])
            span[1] = b
    counts = index.groupby("domain_id", sort=False).size()
    table = pd.DataFrame(
        {
            "domain_id": list(spans),
            "first_row": [s[0] for s in spans.values()],
            "n_rows": [s[1] - s[0] for s in spans.values()],
            "sha256": [hashlib.sha256("".join(d).encode()).hexdigest() for d in expected.values()],
        }
    )
    bad = table.loc[table["n_rows"].to_numpy() != counts.reindex(table["domain_id"]).to_numpy()]
    if len(bad) or len(table) != len(counts) or table["n_rows"].sum() != array.n_rows:
        raise InputDataError(f"mirror check failed: row counts differ for {list(bad.domain_id)}")
    return table


def _du(dst: str) -> int:
    fs, path = url_to_fs(dst)
    return int(fs.du(path, total=True))


def shard_chunks(total: int, shard: int, shards: int) -> range:
    """Writer `shard` of `shards` takes a contiguous run of whole chunks, so no two writers
    ever write the same chunk (one object of a zarr v3 store: its arrays use no sharding
    codec, under which several chunks would share one object)."""
    return range(total * shard // shards, total * (shard + 1) // shards)


def _check_shard(dst: str, fmt: str, shard: tuple[int, int]) -> None:
    """A writer of one shard runs on a planned zarr store only."""
    k, n = shard
    if not 0 <= k < n:
        raise InputDataError(f"--shard must be k/n with 0 <= k < n, not {k}/{n}")
    if fmt == "hdf5":
        raise InputDataError("one HDF5 file takes one writer: shard the zarr format only")
    if not packed.store_format(dst.rstrip("/")):
        raise InputDataError(f"no planned store at {dst}: run `voxelflex mirror --plan-only`")
    # a writer never plans: with several starting at once, re-planning would race
    packed.open_chunks(dst.rstrip("/")).close()


def _complete(dst: str, array, index: pd.DataFrame, total: int) -> None:
    """Every chunk written: verify them against the source's index (by their markers), write
    the index with each row's validity and the domain table, mark the store complete."""
    markers = [_read_marker(dst, i) for i in range(total)]
    domains = verify(array, index, markers)
    invalid = sorted(r for m in markers for r in m["invalid_rows"])
    index["valid"] = ~index["row"].isin(invalid)
    packed.write_table(index, join_uri(dst, packed.INDEX), packed.INDEX_SCHEMA)
    packed.write_table(domains, join_uri(dst, packed.DOMAINS), packed.DOMAINS_SCHEMA)
    array.update_attrs({"complete": True})
    fs, path = url_to_fs(join_uri(dst, packed.PROGRESS))
    fs.rm(path, recursive=True)
    log.info("mirror verified: %d rows, %d domains match the source", len(index), len(domains))


def run(
    src: str,
    dst: str,
    fmt: str = "zarr",
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    overwrite: bool = False,
    shard: tuple[int, int] | None = None,
    plan_only: bool = False,
) -> MirrorResult:
    """Mirror `src` into `dst`. In parallel: one run with `plan_only`, then one per
    `shard=(k, n)` (any number at once, e.g. one per pod), then a plain run, which writes
    whatever is missing, verifies and marks the store complete."""
    if shard is not None:
        _check_shard(dst, fmt, shard)
    if fmt not in packed.FORMATS:
        raise InputDataError(f"--format must be one of {packed.FORMATS}, not {fmt!r}")
    if chunk_rows < 1:
        raise InputDataError(f"--chunk-rows must be positive, not {chunk_rows}")
    src = require_file(src, "--src")
    dst = dst.rstrip("/")
    if shard is None:  # no writer runs beside a plain or planning run
        for folder in (dst, join_uri(dst, packed.PROGRESS)):
            remove_leftovers(folder)
    fingerprint = _fingerprint(src)
    array, index = _start(src, dst, fmt, chunk_rows, fingerprint, overwrite)
    total = packed.n_chunks(array.n_rows, array.chunk_rows)
    partial = plan_only or shard is not None
    if array.attrs.get("complete"):
        log.info("mirror %s is complete and verified already (%d rows)", dst, array.n_rows)
        written = 0
    else:
        done = _done_chunks(dst)
        mine = shard_chunks(total, *shard) if shard is not None else range(total)
        todo = [] if plan_only else [i for i in mine if i not in done]
        if done:
            log.info("resuming %s: %d of %d chunks already written", dst, len(done), total)
        source = HDF5VoxelSource(src)
        for i in progress(todo, desc="mirror", unit="chunk", total=len(todo)):
            lo, hi = packed.chunk_bounds(i, array.n_rows, array.chunk_rows)
            rows, marker = _build_chunk(source, index, lo, hi)
            array.write_chunk(i, rows)
            crashpoint("mirror.before_marker")  # the chunk stored, its marker not yet
            with replacing_uri(_marker(dst, i), "w") as fh:  # only after the chunk is stored
                json.dump(marker, fh)
        source.close()
        written = len(todo)
        if partial:
            array.close()
            what = (
                "planned"
                if plan_only or shard is None
                else f"shard {shard[0]}/{shard[1]} wrote {written} chunks"
            )
            log.info("mirror %s %s; a plain run verifies and completes it", dst, what)
            n_rows, n_domains = len(index), index["domain_id"].nunique()
            return MirrorResult(dst, fmt, n_rows, n_domains, total, written, 0, 0, False)
        _complete(dst, array, index, total)
    array.close()
    n_invalid = int((~index["valid"]).sum())
    size = _du(dst)
    result = MirrorResult(
        dst, fmt, len(index), index["domain_id"].nunique(), total, written, n_invalid, size
    )
    log.info(
        "mirror %s: %d residues in %d chunks, %.0f bytes/residue",
        dst,
        result.n_rows,
        total,
        size / max(result.n_rows, 1),
    )
    return result
