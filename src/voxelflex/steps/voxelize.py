"""Voxelize: PDB/mmCIF structures -> a voxel HDF5 in the input contract's layout.

`file[structure][chain][resid_str]` is a (21, 21, 21, 5) bool frame per residue (see
`voxelflex.data.structure` for the geometry), with aposteriori's attributes: `label` (the
residue name) on each dataset, and the frame settings on the file. Residues skipped (missing
backbone atoms) and structures that could not be read are listed in `<out>.skipped.txt`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from pipekit.errors import InputDataError
from pipekit.progress import progress
from voxelflex import __version__
from voxelflex.data.structure import (
    FRAME_EDGE,
    Residues,
    structure_name,
    structure_residues,
    voxelize,
)
from voxelflex.data.voxels import CHANNELS, GRID

log = logging.getLogger(__name__)

VOXEL_FILE = "voxels.hdf5"  # the file name inside a pipeline's voxels artifact
FILE_ATTRS = {
    "frame_edge_length": FRAME_EDGE,
    "voxels_per_side": GRID,
    "atom_encoder": "".join(CHANNELS),  # CNOCACB
    "encode_cb": True,
    "voxelise_all_states": False,
    "made_by": f"voxelflex {__version__}",
}


@dataclass(frozen=True)
class VoxelizeResult:
    out: str
    n_structures: int
    n_residues: int
    skipped: str  # the list of skipped residues and unreadable structures
    n_skipped: int


def write_residues(h5: h5py.File, res: Residues, grids: np.ndarray) -> None:
    """One structure's frames under `h5[res.name]` (replacing an earlier copy)."""
    if res.name in h5:
        del h5[res.name]
    group = h5.create_group(res.name)
    for i in range(len(res)):
        chain = group.require_group(res.chain[i])
        ds = chain.create_dataset(res.resid_str[i], data=grids[i], compression="gzip")
        ds.attrs["label"] = res.resname[i]


def run(structures: list[str], out: str) -> VoxelizeResult:
    if not structures:
        raise InputDataError("give at least one --structure")
    names = [structure_name(s) for s in structures]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InputDataError(f"two structures would share the HDF5 key(s) {dupes}; rename one")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    skipped_lines: list[str] = []
    failed: list[str] = []  # structures that could not be used, with the reason
    n_res = 0
    with h5py.File(out, "w") as h5:
        h5.attrs.update(FILE_ATTRS)
        for path, name in progress(
            list(zip(structures, names, strict=True)), desc="voxelize", unit="structure"
        ):
            try:
                res = structure_residues(path)
            except InputDataError as exc:
                failed.append(str(exc))
                skipped_lines.append(f"{name}\t*\t{exc}")
                continue
            write_residues(h5, res, voxelize(res))
            n_res += len(res)
            skipped_lines.extend(f"{name}\t{where}\t{why}" for where, why in res.skipped.items())
    skipped = f"{out}.skipped.txt"
    Path(skipped).write_text("".join(f"{line}\n" for line in skipped_lines))
    if n_res == 0:
        if len(structures) == 1 and failed:
            raise InputDataError(failed[0])  # it names the file and what is wrong with it
        reasons = "; ".join(line.split("\t")[-1] for line in skipped_lines[:3])
        raise InputDataError(f"no residues could be voxelized ({reasons}); see {skipped}")
    for why in failed:
        log.warning("%s", why)
    log.info("voxelize: %d residues of %d structures -> %s", n_res, len(structures), out)
    return VoxelizeResult(out, len(structures), n_res, skipped, len(skipped_lines))
