"""The packed voxel store: one chunked, compressed array of bit-packed residue grids plus a
parquet row index, in zarr v3 (default) or HDF5, local or in object storage.

Layout of a store at URI `root`:

    root/voxels/...            zarr v3 array (rows, ROW_BYTES) uint8       (format "zarr")
    root/voxels.h5             HDF5 dataset "voxels", same shape and chunks (format "hdf5")
    root/index.parquet         domain_id, chain_id, resid_str, row, valid
    root/domains.parquet       domain_id, first_row, n_rows, sha256 (written when verified)
    root/_progress/            one marker per written chunk (while mirroring)

A row is `np.packbits` of one residue's channel-first (5, 21, 21, 21) bool grid, flattened in
C order (46,305 bits in 5,789 bytes). Rows are ordered by domain, chain and residue number,
so a domain's residues are contiguous and a chunk holds whole stretches of few domains. The
array's attributes record what made it (source and its fingerprint, shape, channels, packing,
format version) and whether it is complete; readers check them before trusting the store.
"""

from __future__ import annotations

import json
import logging
import typing
from typing import Any, Protocol

import numpy as np
import pandas as pd

from pipekit.atomic import replacing_uri
from pipekit.errors import InputDataError
from pipekit.objects import ObjectReader, open_objects
from pipekit.uri import ensure_dir, is_local, join_uri, local_path, open_uri, uri_exists
from voxelflex.data.voxels import CHANNELS, VOXEL_SHAPE

log = logging.getLogger(__name__)

FORMAT = "voxelflex-packed-voxels"
FORMAT_VERSION = 1
BITS = int(np.prod(VOXEL_SHAPE))  # 46,305
ROW_BYTES = (BITS + 7) // 8  # 5,789
ARRAY = "voxels"
H5_FILE = "voxels.h5"
INDEX = "index.parquet"
DOMAINS = "domains.parquet"
PROGRESS = "_progress"
FORMATS = ("zarr", "hdf5")
# blosc + zstd on the packed bytes: about as small as gzip on bools, and far faster to decode
CNAME: typing.Final = "zstd"
CLEVEL = 5


def pack(grids: np.ndarray) -> np.ndarray:
    """(n, 5, 21, 21, 21) 0/1 uint8 -> (n, ROW_BYTES) packed rows."""
    return np.packbits(grids.reshape(len(grids), BITS), axis=1)


def unpack(rows: np.ndarray) -> np.ndarray:
    """(n, ROW_BYTES) packed rows -> (n, 5, 21, 21, 21) 0/1 uint8."""
    return np.unpackbits(rows, axis=1, count=BITS).reshape(len(rows), *VOXEL_SHAPE)


def store_attrs(source: str, fingerprint: dict[str, Any], n_rows: int, chunk_rows: int) -> dict:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "source": source,
        "source_fingerprint": fingerprint,
        "voxel_shape": list(VOXEL_SHAPE),
        "channels": list(CHANNELS),
        "packing": "numpy.packbits of the channel-first bool grid, C order, big-endian bits",
        "row_bytes": ROW_BYTES,
        "rows": n_rows,
        "chunk_rows": chunk_rows,
        "compressor": f"blosc-{CNAME}-{CLEVEL}",
        "complete": False,
    }


class ChunkArray(Protocol):
    """The row array of a store, read and written one whole chunk at a time."""

    n_rows: int
    chunk_rows: int

    @property
    def attrs(self) -> dict[str, Any]: ...

    def update_attrs(self, values: dict[str, Any]) -> None: ...

    def read_chunk(self, i: int) -> np.ndarray: ...

    def write_chunk(self, i: int, rows: np.ndarray) -> None: ...

    def close(self) -> None: ...


def n_chunks(n_rows: int, chunk_rows: int) -> int:
    return -(-n_rows // chunk_rows)


def chunk_bounds(i: int, n_rows: int, chunk_rows: int) -> tuple[int, int]:
    return i * chunk_rows, min((i + 1) * chunk_rows, n_rows)


class ZarrChunks:
    def __init__(self, array: Any, root: str) -> None:
        self._array = array
        self.root = root
        self.n_rows = int(array.shape[0])
        self.chunk_rows = int(array.chunks[0])
        self._objects: ObjectReader | None = None
        self._check_layout()

    @classmethod
    def open(cls, root: str, mode: str = "r") -> ZarrChunks:
        import zarr

        try:
            # the format named: zarr otherwise also asks for v2's metadata files (two more
            # requests to object storage per open, both answered 404)
            store = _zarr_store(root, mode)
            return cls(zarr.open_array(store=store, path=ARRAY, mode=mode, zarr_format=3), root)
        except (FileNotFoundError, KeyError, ValueError) as exc:
            raise InputDataError(f"no packed voxel array at {root}: {exc}") from None

    @classmethod
    def create(cls, root: str, n_rows: int, chunk_rows: int, attrs: dict) -> ZarrChunks:
        import zarr
        from zarr.codecs import BloscCodec

        array = zarr.create_array(
            store=_zarr_store(root, "w"),
            name=ARRAY,
            shape=(n_rows, ROW_BYTES),
            chunks=(chunk_rows, ROW_BYTES),
            dtype="uint8",
            fill_value=0,
            compressors=BloscCodec(cname=CNAME, clevel=CLEVEL, shuffle="noshuffle"),
            attributes=attrs,
            overwrite=True,
        )
        return cls(array, root)

    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self._array.attrs)

    def update_attrs(self, values: dict[str, Any]) -> None:
        self._array.attrs.update(values)

    def read_chunk(self, i: int) -> np.ndarray:
        """Chunk `i`'s rows, read as one object and decoded here rather than through zarr's
        read path: the layout is the one `create` writes (checked on opening), and zarr's machinery
        costs about as much CPU per chunk as the decompression, through s3fs three times as
        much (`pipekit.objects`). A chunk never written reads as zeros, as zarr reads it."""
        lo, hi = chunk_bounds(i, self.n_rows, self.chunk_rows)
        if self._objects is None:
            self._objects = open_objects(join_uri(self.root, ARRAY))
        blob = self._objects.get(f"c/{i}/0")
        if blob is None:
            return np.zeros((hi - lo, ROW_BYTES), dtype=np.uint8)
        import numcodecs.blosc

        data = numcodecs.blosc.decompress(blob)
        if len(data) != self.chunk_rows * ROW_BYTES:
            raise ValueError(
                f"chunk {i} decodes to {len(data)} bytes, not {self.chunk_rows} rows of {ROW_BYTES}"
            )
        return np.frombuffer(data, dtype=np.uint8).reshape(self.chunk_rows, ROW_BYTES)[: hi - lo]

    def _check_layout(self) -> None:
        meta = self._array.metadata.to_dict()
        codecs = [c.get("name") for c in meta.get("codecs", [])]
        encoding = meta.get("chunk_key_encoding", {})
        separator = encoding.get("configuration", {}).get("separator")
        if (
            codecs != ["bytes", "blosc"]
            or encoding.get("name") != "default"
            or separator != "/"
            or tuple(self._array.shape[1:]) != (ROW_BYTES,)
            or tuple(self._array.chunks[1:]) != (ROW_BYTES,)
        ):
            raise InputDataError(
                f"packed store {self.root} has a zarr layout this version does not read "
                f"(codecs {codecs}, chunk keys {encoding}): re-run `voxelflex mirror`"
            )

    def write_chunk(self, i: int, rows: np.ndarray) -> None:
        lo, hi = chunk_bounds(i, self.n_rows, self.chunk_rows)
        self._array[lo:hi] = rows

    def close(self) -> None:
        if self._objects is not None:
            self._objects.close()
            self._objects = None


def _zarr_store(root: str, mode: str) -> Any:
    from zarr.storage import FsspecStore, LocalStore

    read_only = mode == "r"
    if is_local(root):
        return LocalStore(local_path(root), read_only=read_only)
    options: dict[str, Any] = {}
    if root.startswith(("s3://", "s3a://")):
        # one GET per object (zarr's metadata; chunks are read by `read_chunk` instead): s3fs
        # asks an object's size first (a HEAD) when it might fetch it in parallel parts
        options["max_concurrency"] = 1
    return FsspecStore.from_url(root, read_only=read_only, storage_options=options)


class HDF5Chunks:
    """The same array in one HDF5 file (blosc-zstd through hdf5plugin)."""

    def __init__(self, root: str, mode: str = "r") -> None:
        import h5py
        import hdf5plugin  # noqa: F401  (registers the blosc filter with HDF5)

        self.uri = join_uri(root, H5_FILE)
        self._fh = None
        try:
            if is_local(self.uri):
                self._file = h5py.File(local_path(self.uri), mode)
            else:
                self._fh = open_uri(self.uri, "rb" if mode == "r" else "r+b")
                self._file = h5py.File(self._fh, mode)
            self._ds = self._file[ARRAY]
        except (OSError, KeyError) as exc:
            raise InputDataError(f"no packed voxel HDF5 at {self.uri}: {exc}") from None
        self.n_rows = int(self._ds.shape[0])
        self.chunk_rows = int(self._ds.chunks[0])

    @classmethod
    def create(cls, root: str, n_rows: int, chunk_rows: int, attrs: dict) -> HDF5Chunks:
        import h5py
        import hdf5plugin

        uri = join_uri(root, H5_FILE)
        if not is_local(uri):
            raise InputDataError(
                f"packed HDF5 is written to local paths only (got {uri}); use the zarr format "
                "for object storage, or write locally and upload"
            )
        path = local_path(uri)
        ensure_dir(local_path(root))
        with h5py.File(path, "w") as f:
            ds = f.create_dataset(
                ARRAY,
                shape=(n_rows, ROW_BYTES),
                chunks=(chunk_rows, ROW_BYTES),
                dtype="uint8",
                **hdf5plugin.Blosc(cname=CNAME, clevel=CLEVEL, shuffle=hdf5plugin.Blosc.NOSHUFFLE),
            )
            for key, value in attrs.items():
                ds.attrs[key] = _h5_attr(value)
        return cls(root, "r+")

    @property
    def attrs(self) -> dict[str, Any]:
        out = {}
        for key, value in self._ds.attrs.items():
            text = value.decode() if isinstance(value, bytes) else value
            out[key] = json.loads(text) if isinstance(text, str) else text
        return out

    def update_attrs(self, values: dict[str, Any]) -> None:
        for key, value in values.items():
            self._ds.attrs[key] = _h5_attr(value)
        self._file.flush()

    def read_chunk(self, i: int) -> np.ndarray:
        lo, hi = chunk_bounds(i, self.n_rows, self.chunk_rows)
        return self._ds[lo:hi]

    def write_chunk(self, i: int, rows: np.ndarray) -> None:
        lo, hi = chunk_bounds(i, self.n_rows, self.chunk_rows)
        self._ds[lo:hi] = rows
        self._file.flush()  # a chunk marked done must be on disk

    def close(self) -> None:
        self._file.close()
        if self._fh is not None:
            self._fh.close()


def _h5_attr(value: Any) -> str:
    return json.dumps(value)  # one encoding for every attribute, read back by `attrs`


def store_format(root: str) -> str | None:
    """'zarr' or 'hdf5' when `root` holds a packed store (by its files), else None."""
    if not uri_exists(join_uri(root, INDEX)):
        return None
    return "hdf5" if uri_exists(join_uri(root, H5_FILE)) else "zarr"


def open_chunks(root: str, mode: str = "r", fmt: str | None = None) -> ChunkArray:
    fmt = fmt or store_format(root)
    if fmt == "hdf5":
        return HDF5Chunks(root, mode)
    return ZarrChunks.open(root, mode)


INDEX_SCHEMA = {
    "domain_id": "string",
    "chain_id": "string",
    "resid_str": "string",
    "row": "int64",
    "valid": "bool_",
}
DOMAINS_SCHEMA = {
    "domain_id": "string",
    "first_row": "int64",
    "n_rows": "int64",
    "sha256": "string",
}


def write_table(df: pd.DataFrame, uri: str, schema: dict[str, str]) -> None:
    """Parquet with a fixed schema and no pandas metadata, so the same rows always give the
    same bytes (a resumed mirror is byte-identical to an uninterrupted one)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrow = pa.schema([(name, getattr(pa, kind)()) for name, kind in schema.items()])
    table = pa.Table.from_pandas(df[list(schema)], schema=arrow, preserve_index=False)
    with replacing_uri(uri, "wb") as fh:  # a reader never sees half an index
        pq.write_table(table.replace_schema_metadata(None), fh)


def read_index(root: str) -> pd.DataFrame:
    with open_uri(join_uri(root, INDEX), "rb") as fh:
        return pd.read_parquet(fh)
