"""Voxelizing structures: frames checked by hand, rotation invariance, PDB quirks."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.conftest import ideal_residue, pdb_line, write_pdb, write_tiny_checkpoint
from voxelflex.cli import main
from voxelflex.data.structure import (
    BLANK_CHAIN,
    CB_LOCAL,
    VOXEL_EDGE,
    backbone_residues,
    read_structure,
    voxelize,
)
from voxelflex.data.voxels import HDF5VoxelSource

C, N, OX, CA, CB = range(5)  # channel numbers (OX: oxygen)


def voxel(local) -> tuple[int, int, int]:
    return tuple(int(v) for v in np.rint(np.asarray(local) / VOXEL_EDGE).astype(int) + 10)


def test_a_frame_computed_by_hand(tmp_path: Path) -> None:
    centre = ideal_residue([10.0, 20.0, 30.0])  # its frame is the identity at CA
    other = ideal_residue([10.0 + 2.3, 20.0 - 1.1, 30.0 + 0.9], axes=np.eye(3)[[1, 2, 0]])
    pdb = write_pdb(tmp_path / "two.pdb", [("ALA", "A", 1, centre), ("GLY", "A", 2, other)])
    res = backbone_residues(read_structure(pdb), "two")
    grid = voxelize(res)[0]
    assert grid.shape == (21, 21, 21, 5) and grid.dtype == bool
    assert grid[10, 10, 10, CA]  # the residue's CA at the centre
    assert grid[(*voxel([0, 1.458, 0]), N)] and voxel([0, 1.458, 0]) == (10, 13, 10)
    assert grid[(*voxel(centre["C"] - centre["CA"]), C)]
    assert grid[(*voxel(CB_LOCAL), CB)] and voxel(CB_LOCAL) == (9, 9, 8)
    # the neighbour's CA at local (2.3, -1.1, 0.9): voxel (14, 8, 12), worked out by hand
    assert grid[14, 8, 12, CA]
    # CA is its own channel, not also carbon
    assert not grid[10, 10, 10, C]
    assert grid.sum() == 10  # 4 backbone atoms + CB, for both residues


def test_virtual_cb_geometry() -> None:
    n = np.array([0.0, 1.458, 0.0])
    c = 1.525 * np.array([np.sin(np.deg2rad(111.2)), np.cos(np.deg2rad(111.2)), 0.0])

    def angle(u, v):
        return np.degrees(np.arccos(u @ v / np.linalg.norm(u) / np.linalg.norm(v)))

    assert np.linalg.norm(CB_LOCAL) == pytest.approx(1.53, abs=0.01)
    assert angle(n, CB_LOCAL) == pytest.approx(110.5, abs=1.5)
    assert angle(c, CB_LOCAL) == pytest.approx(110.1, abs=1.5)
    assert np.cross(c, n) @ CB_LOCAL < 0  # L-amino acid side of the N-CA-C plane


def test_frames_do_not_depend_on_where_the_protein_sits(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    residues = []
    for i in range(6):  # a rough strand with some twist
        axes, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        if np.linalg.det(axes) < 0:
            axes[0] *= -1
        residues.append(("ALA", "A", i + 1, ideal_residue([3.4 * i, 0.5 * i, 0.3 * i], axes)))
    a = write_pdb(tmp_path / "a.pdb", residues)
    rot, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    if np.linalg.det(rot) < 0:
        rot[0] *= -1
    moved = [
        (r, c, n, {k: v @ rot.T + [5, -7, 11] for k, v in at.items()}) for r, c, n, at in residues
    ]
    b = write_pdb(tmp_path / "b.pdb", moved)
    ga = voxelize(backbone_residues(read_structure(a), "a"))
    gb = voxelize(backbone_residues(read_structure(b), "b"))
    # a voxel boundary may flip for an atom within rounding of it; nearly all must agree
    assert ga.sum() >= 60 and (ga != gb).sum() <= 0.02 * ga.sum()


def test_pdb_quirks(tmp_path: Path) -> None:
    base = ideal_residue([0.0, 0.0, 0.0])
    second = ideal_residue([3.8, 0.0, 0.0])
    chain_b = ideal_residue([0.0, 4.0, 2.0])
    lines, serial = [], 1
    for name, xyz in base.items():
        if name == "O":  # two locations: the higher occupancy one (B) counts
            lines.append(pdb_line(serial, "O", "SER", "A", 52, xyz, altloc="A", occ=0.3))
            lines.append(
                pdb_line(
                    serial + 1, "O", "SER", "A", 52, np.add(xyz, [0, 0, 3.0]), altloc="B", occ=0.7
                )
            )
            serial += 2
            continue
        for alt, occ in (("A", 0.3), ("B", 0.7)):
            lines.append(pdb_line(serial, name, "SER", "A", 52, xyz, altloc=alt, occ=occ))
            serial += 1
    for name, xyz in second.items():
        lines.append(pdb_line(serial, name, "GLY", "A", 52, xyz, icode="A"))
        serial += 1
    for name in ("CA", "C", "O"):  # no N: no frame
        lines.append(pdb_line(serial, name, "LYS", "A", 53, second[name] + [0, 9, 0]))
        serial += 1
    for name, xyz in chain_b.items():
        lines.append(pdb_line(serial, name, "ALA", "B", 1, xyz))
        serial += 1
    lines.append(pdb_line(serial, "H", "ALA", "B", 1, [0.5, 4.5, 2.0], element="H"))
    lines.append(pdb_line(serial + 1, "O", "HOH", "A", 100, [1.0, 1.0, 1.0], record="HETATM"))
    lines.append(pdb_line(serial + 2, "C1", "LIG", "A", 101, [1.0, -1.0, 1.0], record="HETATM"))
    path = tmp_path / "quirks.pdb"
    path.write_text("\n".join([*lines, "END"]) + "\n")

    res = backbone_residues(read_structure(path), "quirks")
    assert list(zip(res.chain, res.resid_str, strict=True)) == [
        ("A", "52"),
        ("A", "52A"),
        ("B", "1"),
    ]
    assert res.resname == ["SER", "GLY", "ALA"]
    assert res.skipped == {"A/53": "missing backbone atom(s) N"}
    grid = voxelize(res)[0]
    assert grid[(*voxel([0, 0, 3.0] + base["O"]), OX)] and not grid[(*voxel(base["O"]), OX)]
    assert not grid[(*voxel([1.0, 1.0, 1.0]), OX)] and not grid[..., C][voxel([1.0, -1.0, 1.0])]
    assert grid[(*voxel(chain_b["CA"]), CA)]  # other chains are part of the environment
    assert voxelize(res)[1][..., CB].sum() >= 1  # glycine gets a virtual CB


def test_voxelize_cli_writes_the_input_layout(tmp_path: Path, capsys) -> None:
    residues = [("ALA", "A", i + 1, ideal_residue([3.8 * i, 0, 0])) for i in range(4)]
    pdb = write_pdb(tmp_path / "1abc.pdb", residues)
    gz = tmp_path / "2xyz.pdb.gz"
    import gzip

    gz.write_bytes(gzip.compress(pdb.read_bytes()))
    out = tmp_path / "voxels.hdf5"
    assert main(["voxelize", "--structure", str(pdb), str(gz), "--out", str(out), "-q"]) == 0
    assert "8 residues of 2 structure(s)" in capsys.readouterr().out
    with h5py.File(out) as f:
        assert f.attrs["voxels_per_side"] == 21 and f.attrs["frame_edge_length"] == 12.0
        assert f["1abc"]["A"]["1"].attrs["label"] == "ALA"
    source = HDF5VoxelSource(str(out))
    assert sorted(source.domain_ids()) == ["1abc", "2xyz"]
    listed = source.list_residues(["1abc"])
    grids, ok = source.read_domain("1abc", listed.chain_id.to_numpy(), listed.resid_str.to_numpy())
    assert ok.all() and grids.shape == (4, 5, 21, 21, 21)
    source.close()
    both = [str(pdb), str(tmp_path / "none.pdb")]
    assert main(["voxelize", "--structure", *both, "--out", str(out), "-q"]) == 0
    assert "1 skipped" in capsys.readouterr().out
    assert "none" in Path(f"{out}.skipped.txt").read_text()
    none = str(tmp_path / "none.pdb")
    assert main(["voxelize", "--structure", none, "--out", str(tmp_path / "x.h5")]) == 2
    assert "none.pdb" in capsys.readouterr().err


def test_predict_for_a_users_own_structure(tmp_path: Path, capsys) -> None:
    import biotite.structure.io.pdb as pdb_io
    import pandas as pd

    ckpt = write_tiny_checkpoint(tmp_path / "model.pt")
    residues = [("ALA", "A", i + 1, ideal_residue([3.8 * i, 0, 0])) for i in range(5)]
    residues += [("GLY", "B", i + 1, ideal_residue([3.8 * i, 6.0, 1.0])) for i in range(3)]
    structure = write_pdb(tmp_path / "mine.pdb", residues)
    out = tmp_path / "pred"
    argv = ["predict", "--structure", str(structure), "--model", ckpt, "--out", str(out), "-q"]
    assert main([*argv, "--temperature", "300", "--temperature", "350"]) == 0
    assert "8 residues" in capsys.readouterr().out

    table = pd.read_csv(out / "predictions_structures.csv", dtype={"resid_str": str})
    assert len(table) == 16 and set(table.temperature) == {300.0, 350.0}
    assert {"domain_id", "resid", "resname", "temperature", "predicted_rmsf"} <= set(table.columns)
    assert (table.predicted_rmsf > 0).all() and (table.domain_id == "mine").all()
    assert sorted(p.name for p in out.glob("*.png")) == ["mine_A_rmsf.png", "mine_B_rmsf.png"]
    for temp in (300, 350):
        atoms = pdb_io.PDBFile.read(str(out / f"mine_rmsf_{temp}K.pdb")).get_structure(
            model=1, extra_fields=["b_factor"]
        )
        ca = atoms[atoms.atom_name == "CA"]
        want = table.loc[table.temperature == temp, "predicted_rmsf"].to_numpy() * 10
        assert np.allclose(ca.b_factor, np.round(want, 2), atol=0.01)


# Real files as their tools wrote them (MDAnalysisTests ships them): a CHARMM frame of
# adenylate kinase with blank chain IDs, HSD and a segment ID; a deposited PDB (1HVR) whose
# S-hydroxycysteines (CSO) carry MODRES records; a solvated frame with neither chain nor
# segment IDs; a file of small molecules with no protein at all.
real = pytest.importorskip("MDAnalysisTests.datafiles")


def test_blank_chain_ids_fall_back_to_the_segment_id(tmp_path: Path, capsys) -> None:
    res = backbone_residues(read_structure(real.PDB_small), "adk")
    assert set(res.chain) == {"4AKE"} and len(res) == 214  # every residue, HSD included
    names = dict(zip(res.resid_str, res.resname, strict=True))
    assert [names[k] for k in ("126", "134", "172")] == ["HIS"] * 3  # HSD in the file
    out = tmp_path / "v.hdf5"
    assert main(["voxelize", "--structure", real.PDB_small, "--out", str(out), "-q"]) == 0
    with h5py.File(out) as f:
        assert list(f["adk_open"]) == ["4AKE"] and len(f["adk_open/4AKE"]) == 214
    # neither chain nor segment: the documented placeholder, never an empty name
    sol = backbone_residues(read_structure(real.PDB_sub_sol), "cobrotoxin")
    assert set(sol.chain) == {BLANK_CHAIN} and len(sol) == 62


def test_modified_residues_become_their_parent_where_the_file_says_so(tmp_path: Path) -> None:
    res = backbone_residues(read_structure(real.CONECT), "1hvr")
    keys = zip(res.chain, res.resid_str, res.resname, strict=True)
    at67 = [(c, n) for c, k, n in keys if k == "67"]
    assert at67 == [("A", "CYS"), ("B", "CYS")] and not res.skipped  # CSO 67 via MODRES
    # the same file without its MODRES records: CSO is listed as skipped, with the reason
    lines = Path(real.CONECT).read_text().splitlines(True)
    text = "".join(line for line in lines if not line.startswith("MODRES"))
    bare = write_text(tmp_path / "1hvr_nomodres.pdb", text)
    out = tmp_path / "v.hdf5"
    assert main(["voxelize", "--structure", str(bare), "--out", str(out), "-q"]) == 0
    skipped = Path(f"{out}.skipped.txt").read_text().splitlines()
    assert sorted(line.split("\t")[1] for line in skipped) == ["A/67", "B/67"]
    assert all("modified residue CSO" in line for line in skipped)


def test_a_file_without_protein_is_one_line_naming_it(tmp_path: Path, capsys) -> None:
    out = str(tmp_path / "v.hdf5")
    assert main(["voxelize", "--structure", real.PDB_multipole, "--out", out, "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no protein residues" in err and "water_methane" in err and "\n" not in err
    ckpt = write_tiny_checkpoint(tmp_path / "model.pt")
    argv = ["predict", "--structure", real.PDB_multipole, "--model", ckpt, "--temperature", "300"]
    assert main([*argv, "--out", str(tmp_path / "p"), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no protein residues" in err and "water_methane" in err and "\n" not in err


def test_predict_on_a_blank_chain_structure_names_files_by_segment(tmp_path: Path) -> None:
    import biotite.structure.io.pdb as pdb_io

    ckpt = write_tiny_checkpoint(tmp_path / "model.pt")
    out = tmp_path / "pred"
    argv = ["predict", "--structure", real.PDB_small, "--model", ckpt, "--temperature", "300"]
    assert main([*argv, "--out", str(out), "-q"]) == 0
    assert [p.name for p in out.glob("*.png")] == ["adk_open_4AKE_rmsf.png"]
    written = pdb_io.PDBFile.read(str(out / "adk_open_rmsf_300K.pdb")).get_structure(
        model=1, extra_fields=["b_factor"]
    )
    assert set(written.chain_id) == {""}  # written back as the file had it
    assert (written.b_factor[written.atom_name == "CA"] > 0).all()


def write_text(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize("bad", ["nan", "0", "-5", "inf"])
def test_predict_rejects_temperatures_that_are_not_kelvin(tmp_path: Path, capsys, bad) -> None:
    ckpt = write_tiny_checkpoint(tmp_path / "model.pt")
    residues = [("ALA", "A", i + 1, ideal_residue([3.8 * i, 0, 0])) for i in range(3)]
    structure = write_pdb(tmp_path / "mine.pdb", residues)
    argv = ["predict", "--structure", str(structure), "--model", ckpt, "--temperature", bad]
    assert main([*argv, "--out", str(tmp_path / "p"), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert "kelvin above 0" in err and "\n" not in err


def test_predict_outside_the_training_range_warns(tmp_path: Path, capsys) -> None:
    ckpt = write_tiny_checkpoint(tmp_path / "model.pt")  # trained on 320-450 K
    residues = [("ALA", "A", i + 1, ideal_residue([3.8 * i, 0, 0])) for i in range(3)]
    structure = write_pdb(tmp_path / "mine.pdb", residues)
    argv = ["predict", "--structure", str(structure), "--model", ckpt, "--temperature", "290"]
    assert main([*argv, "--out", str(tmp_path / "p"), "-q"]) == 0
    assert "290 K outside the training range 320-450 K" in capsys.readouterr().err
