"""Where the voxels come from: a per-residue HDF5 file or a packed store, chosen by the URI
(kept apart from `voxels`, which the packed store's reader builds on)."""

from __future__ import annotations

from pipekit.errors import InputDataError
from pipekit.uri import require_file
from voxelflex.data import packed
from voxelflex.data.packed_source import PackedVoxelSource
from voxelflex.data.voxels import SYNTHETIC_ATTR, HDF5VoxelSource, VoxelSource


def synthetic_note(uri: str) -> str | None:
    """What made the voxels where they are synthetic (the demo writes it into the file, a
    packed store points back at its source); None for real data or where it cannot tell."""
    try:
        source = open_voxel_source(uri)
        if isinstance(source, PackedVoxelSource):
            origin = source.array.attrs.get("source")
            return synthetic_note(str(origin)) if origin and origin != uri else None
        if isinstance(source, HDF5VoxelSource):
            note = source.file.attrs.get(SYNTHETIC_ATTR)
            source.close()
            return None if note is None else str(note)
    except (InputDataError, OSError):
        return None
    return None


def open_voxel_source(uri: str | None, key: str = "input.voxel_file") -> VoxelSource:
    """Pick the reader from the URI: a packed store (a folder/prefix holding `index.parquet`,
    made by `voxelflex mirror`) or a per-residue HDF5 file."""
    uri = require_file(uri, key)
    if packed.store_format(uri.rstrip("/")):
        return PackedVoxelSource(uri)
    return HDF5VoxelSource(uri)
