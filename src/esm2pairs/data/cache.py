"""The master embedding cache: `master_esm2_embeddings.h5` (an `emb` (N, D) row store and
`emb_keys`, one per row: sequence hash + model signature) and `master_esm2_embeddings.parquet`
(`brc_fea_id -> row`), kept together in one folder (any fsspec URI).

Rows never move, so the index stays valid while the store grows. New embeddings are first
written as whole part files (`_parts/part-*.npz`); a merge then writes a new store (old rows
in place, parts' rows replaced or appended by key) and swaps it in whole, then the index,
then removes the parts. A kill at any point leaves the old store or the new one, never half
of one; the parts left over are merged by the next run (a key is never stored twice).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import h5py
import numpy as np
import pandas as pd

from pipekit.atomic import replacing_path, replacing_uri
from pipekit.errors import InputDataError
from pipekit.faults import crashpoint
from pipekit.uri import is_local, join_uri, local_path, open_uri, remove_uri, uri_exists

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
PARTS = "_parts"
COPY_ROWS = 8192  # rows copied per read when a merge rewrites the store


def seq_hash(seq: str) -> str:
    return hashlib.sha256(seq.encode()).hexdigest()[:32]


def cache_key(seq: str, signature: str) -> str:
    return f"{seq_hash(seq)}:{signature}"


@dataclass(frozen=True)
class CacheMeta:
    """What made the embeddings; readers check it before trusting a row."""

    model_name: str
    model_signature: str
    pooling: str
    layer: str
    precision: str
    max_residues: int
    dim: int
    format_version: int = FORMAT_VERSION

    @classmethod
    def from_attrs(cls, attrs: Any, where: str) -> CacheMeta:
        try:
            return cls(**{k: _plain(attrs[k]) for k in cls.__dataclass_fields__})
        except KeyError as exc:
            raise InputDataError(
                f"{where} lacks cache attribute {exc}; not a master cache"
            ) from None

    def differs(self, other: CacheMeta) -> str | None:
        if self.model_signature == other.model_signature and self.dim == other.dim:
            return None
        return (
            f"it holds {self.model_name} (signature {self.model_signature}, {self.pooling} "
            f"pooling, layer {self.layer}), this run computes {other.model_name} (signature "
            f"{other.model_signature}, {other.pooling} pooling, layer {other.layer})"
        )


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    return value.item() if isinstance(value, np.generic) else value


@contextmanager
def open_h5(uri: str) -> Iterator[h5py.File]:
    """Read a store, local or through fsspec (only the chunks read are fetched)."""
    if is_local(uri):
        with h5py.File(local_path(uri), "r") as f:
            yield f
        return
    with open_uri(uri, "rb") as fh, h5py.File(fh, "r") as f:
        yield f


class MasterCache:
    """The two files of one cache folder and the parts waiting to be merged into them."""

    def __init__(self, folder: str, h5_name: str, index_name: str) -> None:
        self.folder = folder.rstrip("/")
        self.h5 = join_uri(self.folder, h5_name)
        self.index = join_uri(self.folder, index_name)
        self.parts_dir = join_uri(self.folder, PARTS)

    def exists(self) -> bool:
        return uri_exists(self.h5)

    def meta(self) -> CacheMeta | None:
        if not self.exists():
            return None
        with open_h5(self.h5) as f:
            return CacheMeta.from_attrs(f.attrs, self.h5)

    def keys(self) -> np.ndarray:
        if not self.exists():
            return np.array([], dtype=object)
        with open_h5(self.h5) as f:
            return f["emb_keys"][:].astype(str).astype(object)

    def read_index(self, required: bool = True) -> pd.DataFrame:
        """The index; without one, an empty one when not `required` (a writer rebuilds it
        from the store's keys)."""
        if not uri_exists(self.index):
            if self.exists() and required:
                raise InputDataError(
                    f"the cache index {self.index} is missing beside {self.h5}: both files are "
                    "required (re-run the embed step to rebuild it)"
                )
            return pd.DataFrame(
                {
                    "brc_fea_id": pd.Series([], dtype=object),
                    "row": pd.Series([], dtype="int64"),
                    "seq_hash": pd.Series([], dtype=object),
                }
            )
        with open_uri(self.index, "rb") as fh:
            return pd.read_parquet(fh)

    # ---- parts: new rows made durable before they are merged

    def _waiting(self, suffix: str) -> list[str]:
        """URIs of the files in the parts folder whose names end with `suffix`, sorted."""
        from fsspec.core import url_to_fs

        fs, path = url_to_fs(self.parts_dir)
        if not fs.exists(path):
            return []
        names = sorted(p.rsplit("/", 1)[-1] for p in fs.ls(path, detail=False))
        return [join_uri(self.parts_dir, n) for n in names if n.endswith(suffix)]

    def part_uris(self) -> list[str]:
        return self._waiting(".npz")

    def write_part(self, keys: list[str], emb: np.ndarray) -> str:
        buf = io.BytesIO()
        np.savez(buf, keys=np.array(keys, dtype="S"), emb=emb)
        uri = join_uri(self.parts_dir, f"part-{uuid.uuid4().hex}.npz")
        with replacing_uri(uri, "wb") as fh:
            fh.write(buf.getvalue())
        return uri

    def write_shard_record(self, meta: CacheMeta, failed: dict[str, str]) -> str:
        """What one shard of a fanned-out embed made its parts with, and the keys it could
        not embed (key -> reason), whole in one file beside its parts."""
        record = {"meta": asdict(meta), "failed": failed}
        uri = join_uri(self.parts_dir, f"shard-{uuid.uuid4().hex}.json")
        with replacing_uri(uri, "w") as fh:
            json.dump(record, fh)
        return uri

    def shard_records(self) -> tuple[list[str], list[dict[str, Any]]]:
        """The shards' records waiting beside their parts: (URIs, contents)."""
        uris = self._waiting(".json")
        records = []
        for uri in uris:
            with open_uri(uri, "r") as fh:
                records.append(json.load(fh))
        return uris, records

    def part_keys(self) -> set[str]:
        """Keys already in parts waiting to be merged (a shard run again skips them)."""
        keys: set[str] = set()
        for part in self.part_uris():
            with open_uri(part, "rb") as fh, np.load(fh) as z:
                keys.update(z["keys"].astype(str))
        return keys

    def part_dim(self) -> int:
        """The width of the waiting parts' embeddings; 0 when there are none."""
        for part in self.part_uris():
            with open_uri(part, "rb") as fh, np.load(fh) as z:
                return int(z["emb"].shape[1])
        return 0

    # ---- merge: a new store with the parts' rows, swapped in whole

    def merge(self, meta: CacheMeta, parts: list[str] | None = None) -> dict[str, int] | None:
        """Merge waiting parts (`parts`, default all there are) into the store; returns
        {key: row} of the whole store, or None when there was nothing to merge."""
        parts = self.part_uris() if parts is None else parts
        if not parts:
            return None
        old_keys = self.keys()
        rows = {k: i for i, k in enumerate(old_keys)}
        n_old = len(old_keys)
        new_keys: list[str] = []
        for part in parts:
            with open_uri(part, "rb") as fh, np.load(fh) as z:
                for k in z["keys"].astype(str):
                    if k not in rows:
                        rows[k] = n_old + len(new_keys)
                        new_keys.append(k)
        dtype = np.float16 if meta.precision == "fp16" else np.float32
        with replacing_path(self.h5) as path, h5py.File(path, "w") as out:
            n = n_old + len(new_keys)
            # contiguous, uncompressed: a batch's rows are scattered over the whole store, and
            # chunked reads fetch a chunk per row (8x slower, measured); the store is rewritten
            # whole on each merge, so it never has to grow in place
            emb = out.create_dataset("emb", shape=(n, meta.dim), dtype=dtype)
            if n_old:
                with open_h5(self.h5) as old:
                    for start in range(0, n_old, COPY_ROWS):
                        end = min(start + COPY_ROWS, n_old)
                        emb[start:end] = old["emb"][start:end]
            for part in parts:  # later parts win for a key written twice (a re-compute)
                with open_uri(part, "rb") as fh, np.load(fh) as z:
                    idx = np.array([rows[k] for k in z["keys"].astype(str)], dtype=np.int64)
                    order = np.argsort(idx)
                    emb[idx[order]] = z["emb"][order].astype(dtype)
            all_keys = np.array([*old_keys.astype(str), *new_keys], dtype="S")
            out.create_dataset("emb_keys", data=all_keys)
            out.attrs.update(asdict(meta))
        crashpoint("cache.store_replaced")
        return rows

    def write_index(self, index: pd.DataFrame) -> None:
        buf = io.BytesIO()
        index.to_parquet(buf, index=False)
        with replacing_uri(self.index, "wb") as fh:
            fh.write(buf.getvalue())
        crashpoint("cache.index_replaced")

    def drop_parts(self, parts: list[str]) -> None:
        for i, part in enumerate(parts):
            remove_uri(part)
            if i == 0:
                crashpoint("cache.parts_dropping")

    def check(self) -> tuple[CacheMeta, pd.DataFrame]:
        """Both files there, the store's datasets and attributes complete and consistent;
        returns what made the store and its index (read once, for the caller to use)."""
        meta = self.meta()
        if meta is None:
            raise InputDataError(f"no master cache at {self.h5}: run the embed step first")
        with open_h5(self.h5) as f:
            for name in ("emb", "emb_keys"):
                if name not in f:
                    raise InputDataError(f"{self.h5} lacks its '{name}' dataset")
            n, dim = f["emb"].shape
            if len(f["emb_keys"]) != n or dim != meta.dim:
                raise InputDataError(f"{self.h5}: emb {f['emb'].shape} and emb_keys disagree")
        index = self.read_index()
        if len(index) and int(index["row"].max()) >= n:
            raise InputDataError(f"{self.index} points past the {n} rows of {self.h5}")
        return meta, index
