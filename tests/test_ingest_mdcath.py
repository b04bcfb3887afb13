"""mdCATH-layout files -> voxel HDF5 + aggregated RMSF CSV, resumable, failures listed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from conftest import ideal_residue, pdb_line
from voxelflex.cli import main
from voxelflex.data.voxels import HDF5VoxelSource
from voxelflex.errors import InputDataError
from voxelflex.steps import ingest_mdcath

TEMPS = (320, 348, 379, 413, 450)


def _pdb_text(n_res: int, shift: float) -> tuple[str, list[str]]:
    lines, names, serial = [], [], 1
    for i in range(n_res):
        resname = ("ALA", "GLY", "SER")[i % 3]
        names.append(resname)
        for atom, xyz in ideal_residue([3.8 * i + shift, 0.3 * i, 0.0]).items():
            lines.append(pdb_line(serial, atom, resname, "A", i + 1, xyz))
            serial += 1
    return "\n".join([*lines, "END"]) + "\n", names


def write_mdcath(folder: Path, domain: str, n_res: int, seed: int, bad_rmsf: bool = False):
    """One file in the mdCATH layout; returns the RMSF per temperature (replicas x residues)."""
    rng = np.random.default_rng(seed)
    text, names = _pdb_text(n_res, shift=seed)
    rmsf = {}
    with h5py.File(folder / f"mdcath_dataset_{domain}.h5", "w") as f:
        g = f.create_group(domain)
        g.create_dataset("pdbProteinAtoms", data=text.encode())
        n_atoms = 4 * n_res
        g.create_dataset("resid", data=np.repeat(np.arange(1, n_res + 1), 4))
        g.create_dataset("resname", data=np.repeat(np.array(names, dtype="S3"), 4))
        g.create_dataset("chain", data=np.array([b"A"] * n_atoms))
        g.create_dataset("element", data=np.array([b"N", b"C", b"C", b"O"] * n_res))
        for temp in TEMPS:
            values = rng.uniform(0.05, 0.4, size=(3, n_res)) * (temp / 320)
            rmsf[temp] = values
            for rep in range(3):
                r = g.create_group(f"{temp}/{rep}")
                r.create_dataset("rmsf", data=values[rep][: n_res - 1 if bad_rmsf else n_res])
                frames = np.where(rng.random((10, n_res)) < 0.8, b"H", b"E").astype("S1")
                frames[:, 0] = b"C"  # residue 1 always coil
                r.create_dataset("dssp", data=frames)
    return rmsf


@pytest.fixture
def mdcath_dir(tmp_path: Path) -> tuple[Path, dict]:
    src = tmp_path / "mdcath"
    src.mkdir()
    truth = {
        "1abcA00": write_mdcath(src, "1abcA00", 6, 1),
        "2defB01": write_mdcath(src, "2defB01", 4, 2),
        "4ghiD00": write_mdcath(src, "4ghiD00", 5, 4),
    }
    write_mdcath(src, "3badC00", 5, 3, bad_rmsf=True)
    return src, truth


def test_ingest_writes_the_input_contract(mdcath_dir, tmp_path: Path, capsys) -> None:
    src, truth = mdcath_dir
    out = tmp_path / "out"
    assert main(["ingest-mdcath", "--src", str(src), "--out", str(out), "-q"]) == 0
    assert "3 domains" in capsys.readouterr().out
    table = pd.read_csv(out / "aggregated_rmsf.csv", dtype={"domain_id": str})
    assert list(table.columns) == ingest_mdcath.CSV_COLUMNS
    assert len(table) == (6 + 4 + 5) * len(TEMPS)
    for domain, per_t in truth.items():
        for temp, values in per_t.items():
            rows = table.loc[(table.domain_id == domain) & (table.temperature_feature == temp)]
            assert np.allclose(rows.target_rmsf, values.mean(axis=0), rtol=1e-5)  # replica mean
            assert rows.resid.tolist() == list(range(1, values.shape[1] + 1))
    first = table.loc[table.resid == 1, "dssp"]
    assert set(first) == {"C"} and set(table.loc[table.resid == 2, "dssp"]) <= {"H", "E"}
    assert table.relative_accessibility.between(0, 1.5).all()
    assert table.relative_accessibility.nunique() > 3  # termini more exposed than the middle
    assert (out / "failed_ingest_domains.txt").read_text().startswith("3badC00\trmsf at 320 K")

    source = HDF5VoxelSource(str(out / "voxels.hdf5"))
    assert sorted(source.domain_ids()) == ["1abcA00", "2defB01", "4ghiD00"]
    listed = source.list_residues(["1abcA00"])
    assert listed.resid_str.tolist() == [str(i) for i in range(1, 7)]
    grids, ok = source.read_domain(
        "1abcA00", listed.chain_id.to_numpy(), listed.resid_str.to_numpy()
    )
    assert ok.all() and grids[:, 3, 10, 10, 10].all()  # each frame's CA at its centre
    source.close()

    # ...and they are training inputs: preprocess joins them without a single skip
    from voxelflex.config import config_from_dict
    from voxelflex.steps import preprocess

    for split, domain in (("train", "1abcA00"), ("val", "2defB01"), ("test", "4ghiD00")):
        (tmp_path / f"{split}.txt").write_text(domain + "\n")
    cfg = config_from_dict(
        {
            "input": {
                "voxel_file": str(out / "voxels.hdf5"),
                "aggregated_rmsf_file": str(out / "aggregated_rmsf.csv"),
                **{f"{s}_split_file": str(tmp_path / f"{s}.txt") for s in ("train", "val", "test")},
            },
            "data": {"processed_dir": str(tmp_path / "processed")},
            "output": {"base_dir": str(tmp_path / "outputs")},
        }
    )
    res = preprocess.run(cfg)
    assert res.n_samples == len(table)
    assert res.counts["voxel_residues_not_in_csv"] == res.counts["csv_residues_not_in_voxels"] == 0


def test_ingest_resumes_after_a_crash(mdcath_dir, tmp_path: Path, monkeypatch) -> None:
    src, _ = mdcath_dir
    whole = tmp_path / "whole"
    ingest_mdcath.run(str(src), str(whole))

    crashed = tmp_path / "crashed"
    real = ingest_mdcath.ingest_domain
    calls = {"n": 0}

    def dying(f, domain):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(f, domain)

    monkeypatch.setattr(ingest_mdcath, "ingest_domain", dying)
    with pytest.raises(KeyboardInterrupt):
        ingest_mdcath.run(str(src), str(crashed))
    monkeypatch.setattr(ingest_mdcath, "ingest_domain", real)
    assert (crashed / "_ingest" / "done.txt").read_text().split() == ["1abcA00"]
    res = ingest_mdcath.run(str(src), str(crashed))
    assert res.n_domains == 3 and res.n_failed == 1
    assert_same_outputs(whole, crashed)


def assert_same_outputs(want: Path, got: Path) -> None:
    """The same CSV, failures and frames (domain by domain, residue by residue)."""
    for name in ("aggregated_rmsf.csv", "failed_ingest_domains.txt"):
        assert (got / name).read_text() == (want / name).read_text()
    a, b = HDF5VoxelSource(str(want / "voxels.hdf5")), HDF5VoxelSource(str(got / "voxels.hdf5"))
    assert sorted(a.domain_ids()) == sorted(b.domain_ids())
    for domain in a.domain_ids():
        listed = a.list_residues([domain])
        keys = listed.chain_id.to_numpy(), listed.resid_str.to_numpy()
        assert np.array_equal(a.read_domain(domain, *keys)[0], b.read_domain(domain, *keys)[0])


def test_sharded_ingest_writers_then_a_merge_match_one_process(mdcath_dir, tmp_path: Path) -> None:
    """Two `--shard` writers at once (real processes), then a plain run that merges."""
    src, _ = mdcath_dir
    whole = tmp_path / "whole"
    ingest_mdcath.run(str(src), str(whole))
    out = tmp_path / "sharded"
    cmd = [sys.executable, "-m", "voxelflex", "ingest-mdcath", "--src", str(src), "--out", str(out)]
    writers = [subprocess.Popen([*cmd, "--shard", f"{k}/2", "-q"]) for k in (0, 1)]
    assert [w.wait(timeout=120) for w in writers] == [0, 0]
    shards = sorted(p.name for p in (out / "_ingest").iterdir())
    assert shards == ["shard-0-of-2", "shard-1-of-2"]
    assert not (out / "aggregated_rmsf.csv").exists()  # only the plain run writes the CSV
    res = ingest_mdcath.run(str(src), str(out))
    assert res.n_domains == 3 and res.n_failed == 1
    assert not list((out / "_ingest").glob("shard-*"))  # merged and removed
    assert_same_outputs(whole, out)


def test_shards_are_contiguous_and_cover_every_domain() -> None:
    files = [f"d{i}" for i in range(7)]
    parts = [ingest_mdcath.shard_sources(files, k, 3) for k in range(3)]
    assert [f for p in parts for f in p] == files and [len(p) for p in parts] == [2, 2, 3]
    with pytest.raises(InputDataError, match="0 <= k < n"):
        ingest_mdcath.shard_sources(files, 3, 3)


def test_ingest_without_files_says_so(tmp_path: Path, capsys) -> None:
    assert main(["ingest-mdcath", "--src", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "mdcath_dataset_*.h5" in capsys.readouterr().err
