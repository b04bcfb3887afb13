"""mdCATH files in the public layout (`mdcath-only-protein-v1.0`), built from a real CHARMM
MD trajectory: adenylate kinase (PSF/DCD, 214 residues, 98 frames) from MDAnalysisTests.

What the public builder writes, and so what these files hold: root attribute `layout`;
group `/<domain>` with attributes `numProteinAtoms`, `numResidues`, `numChains`; `pdb`,
`psf`, `pdbProteinAtoms` as scalar variable-length byte strings (ATOM lines with hydrogens,
CHARMM residue and atom names, chain "0"); per-atom `chain`, `resname`, `element` (strings)
and `resid`, `z` (ints); `/<domain>/<T>/<replica>` with attribute `numFrames` and `coords`
(F, N, 3) float32 A, `forces`, `rmsf` (R,) float32 nm (C-alpha), `rmsd`, `gyrationRadius`,
`box` and `dssp` (F, R) byte strings with coil as b" ".

Each (temperature, replica) takes its own window of the trajectory; its RMSF and DSSP are
computed by MDAnalysis (`analysis.rms.RMSF`, `analysis.dssp.DSSP`), independently of the
project's code. `capped=True` adds the CHARMM ACE/CT3 caps every mdCATH system carries (CAY,
HY1-3, CY, OY in the first residue; NT, HNT, CAT, HT1-3 in the last) and renumbers the
residues from `first_resid`, as mdCATH keeps the original PDB numbering.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

TEMPS = (320, 348, 379, 413, 450)
REPLICAS = 5
WINDOW = 12  # frames per (temperature, replica)
Z = {"H": 1, "C": 6, "N": 7, "O": 8, "S": 16}
ACE = ("CAY", "HY1", "HY2", "HY3", "CY", "OY")  # CHARMM N-terminal acetyl cap
CT3 = ("NT", "HNT", "CAT", "HT1", "HT2", "HT3")  # CHARMM C-terminal N-methylamide cap


@dataclass
class MdcathTruth:
    """What the file says, computed by MDAnalysis: RMSF (nm) per temperature, replicas x
    residues; the residue numbers and the CHARMM residue names."""

    rmsf: dict[int, np.ndarray]
    resid: np.ndarray
    resname: list[str]


def _universe():
    import MDAnalysis as mda
    from MDAnalysisTests.datafiles import DCD, PSF

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mda.Universe(PSF, DCD)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _cap_positions(xyz: np.ndarray, idx: dict[str, int]) -> dict[str, np.ndarray]:
    """Cap atoms placed off the terminal backbone of one frame (A); geometry only roughly
    right, which is all a cap needs here: it is read and left out, never voxelized."""
    n, ca = xyz[idx["N1"]], xyz[idx["CA1"]]
    c, ca_l = xyz[idx["Cl"]], xyz[idx["CAl"]]
    out_n, out_c = _unit(n - ca), _unit(c - ca_l)
    side = _unit(np.cross(out_n, [0.0, 0.0, 1.0]) + 1e-3)
    cy = n + 1.34 * out_n
    cay = cy + 1.50 * out_n + 0.4 * side
    nt = c + 1.34 * out_c
    cat = nt + 1.45 * out_c + 0.4 * side
    ex, ey, ez = np.eye(3)
    return {
        "CAY": cay, "HY1": cay + ex, "HY2": cay + ey, "HY3": cay + ez,
        "CY": cy, "OY": cy + 1.23 * side,
        "NT": nt, "HNT": nt - 1.0 * side, "CAT": cat,
        "HT1": cat + ex, "HT2": cat + ey, "HT3": cat + ez,
    }  # fmt: skip


def _pdb_line(serial: int, name: str, resname: str, resid: int, xyz, segid: str) -> str:
    atom = f" {name:<3}" if len(name) < 4 else name
    x, y, z = xyz
    return (
        f"ATOM  {serial:>5} {atom} {resname:<4}0{resid:>4}    {x:8.3f}{y:8.3f}{z:8.3f}"
        f"{1.0:6.2f}{0.0:6.2f}      {segid:<4}{name[0]:>2}\n"
    )


def write_mdcath_file(
    folder: Path, domain: str, capped: bool = False, first_resid: int = 1
) -> MdcathTruth:
    """`folder/mdcath_dataset_<domain>.h5` in the public layout; returns what MDAnalysis
    computed for it."""
    from MDAnalysis.analysis.dssp import DSSP
    from MDAnalysis.analysis.rms import RMSF
    from MDAnalysisTests.datafiles import PSF

    u = _universe()
    residues = u.residues
    offset = first_resid - int(residues.resids[0])
    names = list(u.atoms.names)
    resnames = list(u.atoms.resnames)
    resids = list(u.atoms.resids + offset)
    order = list(range(u.atoms.n_atoms))  # source atom per written atom (-1: a cap atom)
    caps: list[str] = [""] * len(order)
    if capped:  # ACE replaces the N-terminal HT1-3, CT3 the C-terminal OT1/OT2
        first, last = residues[0].atoms.indices, residues[-1].atoms.indices
        keep = [i for i in order if not (i in first and names[i].startswith("HT"))]
        keep = [i for i in keep if not (i in last and names[i] == "OT2")]
        ace, ct3 = list(ACE), list(CT3)
        start = keep.index(first[0])
        order = keep[:start] + [-1] * len(ace) + keep[start:] + [-1] * len(ct3)
        caps = [""] * start + ace + [""] * (len(keep) - start) + ct3
    n_atoms = len(order)

    def atom_field(values, cap_value):
        return [values[i] if i >= 0 else cap_value(k) for k, i in enumerate(order)]

    first_res, last_res = residues[0], residues[-1]
    w_names = [
        ("O" if capped and names[i] == "OT1" else names[i]) if i >= 0 else caps[k]
        for k, i in enumerate(order)
    ]
    at_start = set(ACE)
    w_resnames = atom_field(
        resnames, lambda k: first_res.resname if caps[k] in at_start else last_res.resname
    )
    w_resids = atom_field(resids, lambda k: int(resids[0] if caps[k] in at_start else resids[-1]))
    elements = [n[0] for n in w_names]
    idx = {
        "N1": first_res.atoms.select_atoms("name N").indices[0],
        "CA1": first_res.atoms.select_atoms("name CA").indices[0],
        "Cl": last_res.atoms.select_atoms("name C").indices[0],
        "CAl": last_res.atoms.select_atoms("name CA").indices[0],
    }

    def frame_coords(xyz: np.ndarray) -> np.ndarray:
        out = np.zeros((n_atoms, 3), dtype=np.float32)
        placed = _cap_positions(xyz, idx) if capped else {}
        for k, i in enumerate(order):
            out[k] = xyz[i] if i >= 0 else placed[caps[k]]
        return out

    u.trajectory[0]
    first_frame = frame_coords(u.atoms.positions)
    lines = [
        _pdb_line(k + 1, w_names[k], w_resnames[k], w_resids[k], first_frame[k], "P0")
        for k in range(n_atoms)
    ]
    pdb_text = "CRYST1    0.000    0.000    0.000  90.00  90.00  90.00 P 1           1\n"
    pdb_text += "".join(lines) + "END\n"
    vlen = h5py.string_dtype("ascii")
    ca = u.select_atoms("name CA")
    truth = MdcathTruth({}, ca.resids + offset, list(ca.resnames))
    with h5py.File(folder / f"mdcath_dataset_{domain}.h5", "w", libver="latest") as h5:
        h5.attrs["layout"] = "mdcath-only-protein-v1.0"
        g = h5.create_group(domain)
        g.attrs.update({"numProteinAtoms": n_atoms, "numResidues": len(residues), "numChains": 1})
        g.create_dataset("pdb", data=pdb_text.encode(), dtype=vlen)
        g.create_dataset("pdbProteinAtoms", data="".join(lines).encode(), dtype=vlen)
        g.create_dataset("psf", data=Path(PSF).read_bytes(), dtype=vlen)
        g.create_dataset("chain", data=np.array([b"0"] * n_atoms))
        g.create_dataset("resname", data=np.array(w_resnames, dtype="S4"))
        g.create_dataset("element", data=np.array(elements, dtype="S1"))
        g.create_dataset("resid", data=np.array(w_resids, dtype=np.int64))
        g.create_dataset("z", data=np.array([Z[e] for e in elements], dtype=np.int64))
        for t_i, temp in enumerate(TEMPS):
            per_rep = []
            for rep in range(REPLICAS):
                start = (t_i * REPLICAS + rep) * 3
                stop = start + WINDOW
                rmsf = RMSF(ca).run(start=start, stop=stop).results.rmsf / 10.0  # A -> nm
                per_rep.append(rmsf.astype(np.float32))
                states = DSSP(u).run(start=start, stop=stop).results.dssp  # "H", "E", "-"
                frames = [frame_coords(ts.positions) for ts in u.trajectory[start:stop]]
                r = g.create_group(f"{temp}/{rep}")
                r.attrs["numFrames"] = WINDOW
                r.create_dataset("coords", data=np.stack(frames))
                r.create_dataset("forces", data=np.zeros((WINDOW, n_atoms, 3), np.float32))
                r.create_dataset("rmsf", data=per_rep[-1])
                r.create_dataset("rmsd", data=np.zeros(WINDOW, np.float32))
                r.create_dataset("gyrationRadius", data=np.zeros(WINDOW, np.float32))
                r.create_dataset("box", data=np.zeros(3, np.float32))
                r.create_dataset("dssp", data=np.char.replace(states, "-", " ").astype("S1"))
            truth.rmsf[temp] = np.stack(per_rep).astype(np.float64)
    return truth
