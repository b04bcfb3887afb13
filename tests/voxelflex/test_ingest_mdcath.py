"""mdCATH-layout files -> voxel HDF5 + aggregated RMSF CSV, resumable, failures listed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from pipekit.errors import InputDataError
from tests.conftest import ideal_residue, pdb_line
from voxelflex.cli import main
from voxelflex.data.voxels import HDF5VoxelSource
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
    res = preprocess_ingested(
        out, tmp_path, {"train": "1abcA00", "val": "2defB01", "test": "4ghiD00"}
    )
    assert res.n_samples == len(table)
    assert res.counts["voxel_residues_not_in_csv"] == res.counts["csv_residues_not_in_voxels"] == 0


def preprocess_ingested(out: Path, tmp_path: Path, splits: dict[str, str]):
    """preprocess over what ingest-mdcath wrote to `out`, one domain list per split."""
    from voxelflex.config import config_from_dict
    from voxelflex.steps import preprocess

    for split, domains in splits.items():
        (tmp_path / f"{split}.txt").write_text(domains + "\n")
    cfg = config_from_dict(
        {
            "input": {
                "voxel_file": str(out / "voxels.hdf5"),
                "aggregated_rmsf_file": str(out / "aggregated_rmsf.csv"),
                **{f"{s}_split_file": str(tmp_path / f"{s}.txt") for s in splits},
            },
            "data": {"processed_dir": str(tmp_path / "processed")},
            "output": {"base_dir": str(tmp_path / "outputs")},
        }
    )
    return preprocess.run(cfg)


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
    """Two `--shard` writers at once (real processes), then a plain run that assembles."""
    src, _ = mdcath_dir
    whole = tmp_path / "whole"
    ingest_mdcath.run(str(src), str(whole))
    out = tmp_path / "sharded"
    cmd = [sys.executable, "-m", "voxelflex", "ingest-mdcath", "--src", str(src), "--out", str(out)]
    writers = [subprocess.Popen([*cmd, "--shard", f"{k}/2", "-q"]) for k in (0, 1)]
    assert [w.wait(timeout=120) for w in writers] == [0, 0]
    parts = sorted(p.name for p in (out / "_ingest" / "parts").glob("*.csv"))
    assert parts == ["1abcA00.csv", "2defB01.csv", "4ghiD00.csv"]  # both wrote theirs
    assert not (out / "aggregated_rmsf.csv").exists()  # only the plain run writes outputs
    res = ingest_mdcath.run(str(src), str(out))
    assert res.n_domains == 3 and res.n_failed == 1
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


def _ingest_cmd(src: Path, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "voxelflex",
        "ingest-mdcath",
        "--src",
        str(src),
        "--out",
        str(out),
        "-q",
    ]


@pytest.mark.slow
@pytest.mark.parametrize(
    "point",
    [
        "ingest.part_h5",  # inside a domain's frames file
        "ingest.before_csv",  # frames written, the domain not yet done
        "atomic.replace:2",  # a part whole, not yet renamed
        "ingest.assemble",  # half the domains in the temp voxels.hdf5
        "atomic.replace:13",  # voxels.hdf5 written, the CSV not yet
    ],
)
def test_kill_9_at_a_write_point_then_a_rerun_finishes(mdcath_dir, tmp_path: Path, point) -> None:
    """A real process killed with SIGKILL at a write point leaves outputs that are whole or
    absent; the re-run ends with the same files as a run that was never killed."""
    import os

    src, _ = mdcath_dir
    whole = tmp_path / "whole"
    ingest_mdcath.run(str(src), str(whole))
    out = tmp_path / "killed"
    env = {**os.environ, "PIPEKIT_CRASH_AT": point}
    killed = subprocess.run(_ingest_cmd(src, out), env=env, timeout=120)
    assert killed.returncode == -9  # it died at that point, with no chance to tidy up
    if (out / "voxels.hdf5").exists():  # a kill never leaves a half-written output
        HDF5VoxelSource(str(out / "voxels.hdf5")).domain_ids()
    again = subprocess.run(_ingest_cmd(src, out), timeout=120)
    assert again.returncode == 0
    assert not [*out.glob("*.tmp-*"), *(out / "_ingest" / "parts").glob("*.tmp-*")]
    assert_same_outputs(whole, out)
    table = pd.read_csv(out / "aggregated_rmsf.csv", dtype={"domain_id": str})
    with h5py.File(out / "voxels.hdf5") as f:  # the CSV and the frames agree, domain for domain
        assert sorted(f) == sorted(table.domain_id.unique())
        for domain, rows in table.groupby("domain_id"):
            assert sorted(f[domain]["A"], key=int) == [str(r) for r in sorted(rows.resid.unique())]


def test_one_bad_temperature_fails_that_domain_only(mdcath_dir, tmp_path: Path, capsys) -> None:
    src, _ = mdcath_dir
    with h5py.File(src / "mdcath_dataset_2defB01.h5", "a") as f:
        del f["2defB01/413/1/dssp"]
        f["2defB01/413/1/dssp"] = np.full((10, 3), b"H")  # 3 columns for 4 residues
    with h5py.File(src / "mdcath_dataset_4ghiD00.h5", "a") as f:
        f["4ghiD00/450/0/rmsf"][0] = np.nan
    assert main(["ingest-mdcath", "--src", str(src), "--out", str(tmp_path / "o"), "-q"]) == 0
    assert "1 domains ingested" in capsys.readouterr().out
    failed = dict(
        line.split("\t", 1)
        for line in (tmp_path / "o" / "failed_ingest_domains.txt").read_text().splitlines()
    )
    assert sorted(failed) == ["2defB01", "3badC00", "4ghiD00"]
    assert "dssp at 413 K replica 1" in failed["2defB01"] and "non-finite" in failed["4ghiD00"]


def test_nothing_ingested_is_a_failure_with_a_summary(tmp_path: Path, capsys) -> None:
    src = tmp_path / "src"
    src.mkdir()
    write_mdcath(src, "3badC00", 5, 3, bad_rmsf=True)
    assert main(["ingest-mdcath", "--src", str(src), "--out", str(tmp_path / "o"), "-q"]) == 2
    captured = capsys.readouterr()
    assert "0 domains ingested" in captured.out and "1 failed" in captured.out
    assert "no domain was ingested" in captured.err


def test_dssp_states_are_one_alphabet_with_coil_as_c() -> None:
    frames = [np.array([[b"H", b" ", b"-"], [b"H", b"T", b" "]]), np.array([[b"G", b"T", b"E"]])]
    assert ingest_mdcath.most_frequent_state(frames) == ["H", "T", "C"]
    with pytest.raises(InputDataError, match="unknown DSSP state"):
        ingest_mdcath.most_frequent_state([np.array([[b"Q"]])])


# ---- real mdCATH layout, built from a real CHARMM trajectory (MDAnalysisTests) ----

mdcath_files = pytest.importorskip("tests.voxelflex.mdcath_files")


@pytest.fixture(scope="session")
def real_mdcath(tmp_path_factory: pytest.TempPathFactory):
    """Two domains as the public builder writes them: raw CHARMM names in the flat layout,
    and capped + renumbered from 3 in the per-domain folder layout."""
    src = tmp_path_factory.mktemp("mdcath_real")
    raw = mdcath_files.write_mdcath_file(src, "4akeA00")
    (src / "1capA00").mkdir()
    capped = mdcath_files.write_mdcath_file(src / "1capA00", "1capA00", capped=True, first_resid=3)
    return src, {"4akeA00": raw, "1capA00": capped}


@pytest.mark.slow
def test_real_layout_ingests_every_residue_with_exact_rmsf(real_mdcath, tmp_path, capsys) -> None:
    src, truth = real_mdcath
    out = tmp_path / "out"
    assert main(["ingest-mdcath", "--src", str(src), "--out", str(out), "-q"]) == 0
    assert "2 domains ingested (428 residues" in capsys.readouterr().out
    assert (out / "failed_ingest_domains.txt").read_text() == ""
    assert (out / "skipped_ingest_residues.txt").read_text() == ""
    table = pd.read_csv(out / "aggregated_rmsf.csv", dtype={"domain_id": str, "dssp": str})
    for domain, t in truth.items():
        mine = table.loc[table.domain_id == domain]
        assert len(mine) == 214 * len(mdcath_files.TEMPS)  # every residue at every temperature
        for temp, per_replica in t.rmsf.items():
            rows = mine.loc[mine.temperature_feature == temp]
            assert rows.resid.tolist() == t.resid.tolist()  # the file's own numbering
            want = per_replica.mean(axis=0)  # MDAnalysis's RMSF, averaged over replicas
            assert np.allclose(rows.target_rmsf, want, rtol=1e-5, atol=0)  # 6 digits
        std = [{"HSD": "HIS"}.get(n, n) for n in t.resname]
        assert mine.loc[mine.temperature_feature == 320, "resname"].tolist() == std
    assert table.loc[table.domain_id == "1capA00", "resid"].min() == 3
    assert set(table.dssp) <= set(ingest_mdcath.DSSP_STATES) and {"H", "E", "C"} <= set(table.dssp)
    acc = table.relative_accessibility
    assert acc.notna().all() and acc.between(0, 1.5).all() and acc.std() > 0.1

    source = HDF5VoxelSource(str(out / "voxels.hdf5"))
    for domain, t in truth.items():
        listed = source.list_residues([domain])
        assert listed.chain_id.unique().tolist() == ["0"]
        assert sorted(listed.resid_str.astype(int)) == sorted(t.resid.tolist())
    source.close()

    # ...and preprocess takes them with nothing skipped
    res = preprocess_ingested(out, tmp_path, {"train": "4akeA00", "val": "1capA00", "test": ""})
    assert res.n_samples == len(table)
    skipped = {
        k: v for k, v in res.counts.items() if k not in ("csv_rows", "voxel_residues_listed")
    }
    assert not any(skipped.values()), skipped
