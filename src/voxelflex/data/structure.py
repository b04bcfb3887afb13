"""Structures in: PDB/mmCIF (plain or gzipped) -> aposteriori-compatible residue frames.

Geometry (what the model was trained on; see docs/voxelflex.md, "Voxelizing"):

- Only backbone atoms N, CA, C, O of amino-acid residues are kept, plus a virtual CB for every
  residue (glycine included). Hydrogens, ligands and water are ignored; of alternate
  locations the one with the highest occupancy is kept; only the first model is read.
- Names as MD engines write them are read as the standard ones (`standardize`): CHARMM/AMBER
  residue names (HSD/HSE/HSP, HID/HIE/HIP -> HIS, CYX -> CYS, ...), atom names (ILE CD ->
  CD1, OT1/OT2 -> O/OXT, HN -> H), and the CHARMM terminal caps (ACE: CAY, HY1-3, CY, OY;
  CT3: NT, HNT, CAT, HT1-3) are left out of the protein.
- A modified residue (MSE, SEP, ...) is voxelized as its parent amino acid where the file
  says which (PDB `MODRES`, mmCIF `pdbx_struct_mod_residue`); without that it is skipped and
  listed with the reason.
- A blank chain ID (MD files that carry only a segment ID) becomes the segment ID
  (PDB columns 73-76), else `BLANK_CHAIN` ("_"): chains are never empty.
- Each residue's frame: its CA at the origin, rotated so that its N lies on +Y and its C in
  the XY plane on the +X side (x = the part of CA->C orthogonal to y, z = x cross y).
- The virtual CB sits at a fixed point of the residue's own frame, `CB_LOCAL`: where ideal
  backbone geometry (N-CA 1.458 A, CA-C 1.525 A, N-CA-C 111.2 deg) puts an L-residue's CB
  (the standard virtual-CB construction, 1.53 A from CA).
- The frame is a cube of 12 A edge around CA, cut into 21 voxels a side (0.571 A each); an
  atom at local position p with every |p_i| <= 6 A sets voxel round(p / 0.571) + 10 of its
  channel: C, N, O, CA, CB (by atom name, not element: CA is not also C). Grids are bool
  (21, 21, 21, 5), indexed [x, y, z, channel].

A residue missing N, CA or C is skipped with its reason (its frame is undefined); a missing
O only leaves that atom out.
"""

from __future__ import annotations

import gzip
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipekit.errors import InputDataError
from pipekit.uri import open_uri
from voxelflex.data.voxels import CHANNELS, GRID, HDF5_SHAPE

log = logging.getLogger(__name__)

FRAME_EDGE = 12.0
VOXEL_EDGE = FRAME_EDGE / GRID
HALF = GRID // 2
BACKBONE = ("N", "CA", "C", "O")
CHANNEL = {name: CHANNELS.index(name) for name in CHANNELS}  # C N O CA CB -> 0..4
BLANK_CHAIN = "_"  # the chain of atoms that have neither a chain ID nor a segment ID
STANDARD = frozenset({
    "ALA", "ARG", "ASN", "ASP", "CYS", "GLN", "GLU", "GLY", "HIS", "ILE",
    "LEU", "LYS", "MET", "PHE", "PRO", "SER", "THR", "TRP", "TYR", "VAL",
})  # fmt: skip
# Residue names of force fields (CHARMM, AMBER protonation states) -> the standard ones
RESNAME_ALIASES = {
    "HSD": "HIS", "HSE": "HIS", "HSP": "HIS", "HID": "HIS", "HIE": "HIS", "HIP": "HIS",
    "CYX": "CYS", "CYM": "CYS", "ASH": "ASP", "GLH": "GLU", "LYN": "LYS",
}  # fmt: skip
# Atom names that differ from the standard ones, per residue ("*": any residue)
ATOM_ALIASES = {
    ("ILE", "CD"): "CD1",
    ("*", "OT1"): "O", ("*", "OT2"): "OXT", ("*", "OC1"): "O", ("*", "OC2"): "OXT",
    ("*", "HN"): "H",
}  # fmt: skip
# CHARMM terminal patches put their cap atoms into the first/last residue: ACE (CAY, HY1-3,
# CY, OY) and CT3 (NT, HNT, CAT, HT1-3). They are not part of the amino acid.
CAP_ATOMS = frozenset({"CAY", "HY1", "HY2", "HY3", "CY", "OY", "NT", "HNT", "CAT"})


def _ideal_cb() -> np.ndarray:
    n = np.array([0.0, 1.458, 0.0])
    angle = np.deg2rad(111.2)
    c = 1.525 * np.array([np.sin(angle), np.cos(angle), 0.0])
    b, cc = -n, c  # CA - N, C - CA (CA at the origin)
    a = np.cross(b, cc)
    return -0.58273431 * a + 0.56802827 * b - 0.54067466 * cc


CB_LOCAL = _ideal_cb()  # about (-0.769, -0.530, -1.208) A


@dataclass
class Residues:
    """The residues of one structure that have a frame, with their backbone."""

    name: str
    chain: list[str] = field(default_factory=list)
    resid_str: list[str] = field(default_factory=list)  # number + insertion code, "52A"
    resid: list[int] = field(default_factory=list)
    resname: list[str] = field(default_factory=list)
    backbone: list[np.ndarray] = field(default_factory=list)  # (4, 3): N CA C O (O may be NaN)
    skipped: dict[str, str] = field(default_factory=dict)  # "A/52A" -> reason

    def __len__(self) -> int:
        return len(self.resid_str)


def read_structure(path: str | Path, text: str | None = None):
    """Atoms of the first model (biotite AtomArray), highest-occupancy alternate locations.
    `text` gives the file's content directly (e.g. a PDB string inside an mdCATH file).

    Annotations added: `file_chain_id` (the chain as the file has it, maybe blank, for
    writing the structure back) and `parent_name` (the parent amino acid the file gives for
    a modified residue, else "")."""
    import biotite.structure.io.pdb as pdb
    import biotite.structure.io.pdbx as pdbx

    name = str(path)
    stem = name[:-3] if name.endswith(".gz") else name
    try:
        if text is None:
            with open_uri(str(path), "rb") as fh:  # local paths and any fsspec URI
                raw = fh.read()
            text = (gzip.decompress(raw) if name.endswith(".gz") else raw).decode()
        if stem.endswith((".cif", ".mmcif")):
            cif = pdbx.CIFFile.read(io.StringIO(text))
            atoms = pdbx.get_structure(cif, model=1, altloc="occupancy")
            parents = _cif_parents(cif)
            atoms.set_annotation("file_chain_id", atoms.chain_id.copy())
        else:
            text, chains = _fill_blank_chains(text)
            atoms = pdb.PDBFile.read(io.StringIO(text)).get_structure(model=1, altloc="occupancy")
            atoms.set_annotation("file_chain_id", atoms.chain_id.copy())
            if chains:
                atoms.file_chain_id[np.isin(atoms.chain_id, list(chains))] = ""
                atoms.chain_id = np.array([chains.get(c, c) for c in atoms.chain_id], "U4")
            parents = _pdb_parents(text)
    except (OSError, ValueError, KeyError, IndexError, UnicodeDecodeError) as exc:
        raise InputDataError(f"cannot read structure {path}: {exc}") from None
    if atoms.array_length() == 0:
        raise InputDataError(f"structure {path} has no atoms")
    atoms.set_annotation(
        "parent_name", np.array([parents.get(str(r), "") for r in atoms.res_name], "U5")
    )
    return atoms


_CHAIN_POOL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def _fill_blank_chains(text: str) -> tuple[str, dict[str, str]]:
    """Atom records with a blank chain ID get a free one-letter stand-in per segment ID
    (columns 73-76; none: `BLANK_CHAIN`), so biotite keeps them apart; returns the new text
    and {stand-in: segment ID or BLANK_CHAIN}."""
    lines = text.splitlines()
    atom = [i for i, line in enumerate(lines) if line.startswith(("ATOM  ", "HETATM"))]
    used = {lines[i][21] for i in atom if len(lines[i]) > 21}
    blank = [i for i in atom if len(lines[i]) <= 21 or lines[i][21] == " "]
    if not blank:
        return text, {}
    free = iter(c for c in _CHAIN_POOL if c not in used)
    stand_in: dict[str, str] = {}
    for i in blank:
        line = lines[i].ljust(80)
        seg = line[72:76].strip() or BLANK_CHAIN
        if seg not in stand_in:
            c = next(free, None)
            if c is None:
                raise ValueError("too many segments without a chain ID")
            stand_in[seg] = c
        lines[i] = line[:21] + stand_in[seg] + line[22:]
    return "\n".join(lines) + "\n", {c: seg for seg, c in stand_in.items()}


def _pdb_parents(text: str) -> dict[str, str]:
    """MODRES records: modified residue name -> its standard parent."""
    out = {}
    for line in text.splitlines():
        if line.startswith("MODRES") and len(line) >= 27:
            name, parent = line[12:15].strip(), line[24:27].strip()
            if name and parent in STANDARD:
                out[name] = parent
    return out


def _cif_parents(cif) -> dict[str, str]:
    """pdbx_struct_mod_residue: modified residue name -> its standard parent."""
    block = cif.block
    if "pdbx_struct_mod_residue" not in block:
        return {}
    cat = block["pdbx_struct_mod_residue"]
    field = "label_comp_id" if "label_comp_id" in cat else "auth_comp_id"
    if field not in cat or "parent_comp_id" not in cat:
        return {}
    names, parents = cat[field].as_array(str), cat["parent_comp_id"].as_array(str)
    return {n: p for n, p in zip(names, parents, strict=True) if p in STANDARD}


def standardize(atoms):
    """Force-field residue and atom names -> the standard ones; CHARMM cap atoms removed
    from amino-acid residues (see the module docstring)."""
    atoms = atoms.copy()
    atoms.res_name = np.array([RESNAME_ALIASES.get(str(r), str(r)) for r in atoms.res_name])
    names = atoms.atom_name.astype(object)
    for i, (res, atom) in enumerate(zip(atoms.res_name, names, strict=True)):
        new = ATOM_ALIASES.get((res, atom)) or ATOM_ALIASES.get(("*", atom))
        if new is not None:
            names[i] = new
    atoms.atom_name = names.astype("U6")
    cap = np.isin(atoms.atom_name, list(CAP_ATOMS)) & np.isin(atoms.res_name, list(STANDARD))
    return atoms[~cap]


def structure_name(path: str | Path) -> str:
    name = Path(str(path)).name
    for ext in (".gz", ".pdb", ".ent", ".cif", ".mmcif"):
        name = name.removesuffix(ext)
    return name


def structure_residues(path: str | Path) -> Residues:
    """The residues of one structure file, keyed by its name (`structure_name`)."""
    return backbone_residues(read_structure(path), structure_name(path), source=str(path))


def backbone_residues(atoms, name: str, source: str | None = None) -> Residues:
    """Amino-acid residues with their N, CA, C, O coordinates (names standardized first).

    Standard amino acids are kept whatever their record type; a modified residue (another
    name, with N, CA and C atoms) is kept as its parent where the file names one, else skipped
    with the reason; ligands, ions and water are not residues here. No amino acid at all:
    InputDataError naming `source`."""
    atoms = standardize(atoms)
    atoms = atoms[atoms.element != "H"]
    out = Residues(name)
    n_amino = 0
    for start, stop in zip(*_residue_bounds(atoms), strict=True):
        res = atoms[start:stop]
        chain, num, icode = str(res.chain_id[0]), int(res.res_id[0]), str(res.ins_code[0])
        key = f"{num}{icode.strip()}"
        resname = str(res.res_name[0])
        parent = str(res.parent_name[0]) if "parent_name" in res.get_annotation_categories() else ""
        if resname not in STANDARD:
            if parent:
                resname = parent  # voxelized as the amino acid the file says it derives from
            elif {"N", "CA", "C"} <= set(res.atom_name.tolist()):
                n_amino += 1
                out.skipped[f"{chain}/{key}"] = (
                    f"modified residue {resname}: the file names no parent amino acid "
                    "(MODRES), so it is not voxelized"
                )
                continue
            else:
                continue  # ligand, ion, water
        n_amino += 1
        coords = np.full((4, 3), np.nan)
        for i, atom in enumerate(BACKBONE):
            hit = np.flatnonzero(res.atom_name == atom)
            if len(hit):
                coords[i] = res.coord[hit[0]]
        missing = [a for a, c in zip(BACKBONE[:3], coords[:3], strict=True) if np.isnan(c).any()]
        if missing:
            out.skipped[f"{chain}/{key}"] = f"missing backbone atom(s) {', '.join(missing)}"
            continue
        out.chain.append(chain)
        out.resid_str.append(key)
        out.resid.append(num)
        out.resname.append(resname)
        out.backbone.append(coords)
    if n_amino == 0:
        raise InputDataError(f"no protein residues (amino acids) in {source or name}")
    for where, why in out.skipped.items():
        log.warning("%s: residue %s skipped: %s", name, where, why)
    return out


def _residue_bounds(atoms) -> tuple[np.ndarray, np.ndarray]:
    import biotite.structure as struc

    if atoms.array_length() == 0:
        return np.zeros(0, int), np.zeros(0, int)
    starts = struc.get_residue_starts(atoms)
    return starts, np.append(starts[1:], atoms.array_length())


def frames(backbone: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per residue: origin (CA) (n, 3) and rotation (n, 3, 3) whose rows are the frame's
    x, y, z axes, so local = R @ (p - CA)."""
    n_at, ca, c = backbone[:, 0], backbone[:, 1], backbone[:, 2]
    y = n_at - ca
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    cc = c - ca
    x = cc - np.sum(cc * y, axis=1, keepdims=True) * y
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    z = np.cross(x, y)
    return ca, np.stack([x, y, z], axis=1)


def environment(res: Residues) -> tuple[np.ndarray, np.ndarray]:
    """All atoms that go into frames: (m, 3) positions and (m,) channel numbers."""
    backbone = np.stack(res.backbone)  # (n, 4, 3)
    origin, rot = frames(backbone)
    cb = origin + np.einsum("nij,i->nj", rot, CB_LOCAL)  # R^T @ CB_LOCAL, per residue
    channels = [CHANNEL["N"], CHANNEL["CA"], CHANNEL["C"], CHANNEL["O"]]
    pos = np.concatenate([backbone.reshape(-1, 3), cb])
    chan = np.concatenate([np.tile(channels, len(backbone)), np.full(len(cb), CHANNEL["CB"])])
    ok = ~np.isnan(pos).any(axis=1)  # a missing O
    return pos[ok], chan[ok]


def voxelize(res: Residues) -> np.ndarray:
    """(n, 21, 21, 21, 5) bool grids, one per residue of `res`, aposteriori layout."""
    n = len(res)
    grids = np.zeros((n, *HDF5_SHAPE), dtype=bool)
    if n == 0:
        return grids
    pos, chan = environment(res)
    origin, rot = frames(np.stack(res.backbone))
    for i in range(n):
        local = (pos - origin[i]) @ rot[i].T  # (m, 3) in residue i's frame
        inside = np.all(np.abs(local) <= FRAME_EDGE / 2, axis=1)
        idx = np.rint(local[inside] / VOXEL_EDGE).astype(int) + HALF
        grids[i, idx[:, 0], idx[:, 1], idx[:, 2], chan[inside]] = True
    return grids


class StructureVoxelSource:
    """Voxelized structures held in memory, behind the VoxelSource interface (predicting for
    a user's own structure needs no HDF5 file)."""

    def __init__(self, residues: list[Residues]) -> None:
        from voxelflex.data.voxels import to_channel_first

        self.uri = "memory:structures"
        self.residues = {r.name: r for r in residues}
        self._grids = {r.name: voxelize(r) for r in residues}
        self._to_cf = to_channel_first

    def domain_ids(self) -> list[str]:
        return list(self.residues)

    def list_residues(self, domains: list[str]):
        import pandas as pd

        rows = [
            (name, chain, key)
            for name in domains
            if name in self.residues
            for chain, key in zip(
                self.residues[name].chain, self.residues[name].resid_str, strict=True
            )
        ]
        return pd.DataFrame(rows, columns=["domain_id", "chain_id", "resid_str"], dtype=object)

    def read_labels(self, domain: str, chain: str, resid_strs: list[str]) -> list[str | None]:
        res = self.residues[domain]
        names = {(c, k): n for c, k, n in zip(res.chain, res.resid_str, res.resname, strict=True)}
        return [names.get((chain, k)) for k in resid_strs]

    def read_domain(self, domain_id: str, chain_ids, resid_strs) -> tuple[np.ndarray, np.ndarray]:
        from voxelflex.data.voxels import VOXEL_SHAPE

        res = self.residues[domain_id]
        where = {(c, k): i for i, (c, k) in enumerate(zip(res.chain, res.resid_str, strict=True))}
        out = np.zeros((len(resid_strs), *VOXEL_SHAPE), dtype=np.uint8)
        ok = np.zeros(len(resid_strs), dtype=bool)
        for j, key in enumerate(zip(chain_ids, resid_strs, strict=True)):
            i = where.get((str(key[0]), str(key[1])))
            if i is not None:
                out[j] = self._to_cf(self._grids[domain_id][i])
                ok[j] = True
        return out, ok

    def close(self) -> None:
        pass
