import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from pipekit.errors import InputDataError
from tests.conftest import grid, write_h5
from voxelflex.cli import main
from voxelflex.config import load_config
from voxelflex.data.samples import SampleIndex, read_master_samples
from voxelflex.data.sources import open_voxel_source
from voxelflex.data.temperature import TemperatureScaler
from voxelflex.paths import RunPaths
from voxelflex.steps import preprocess


@pytest.fixture
def edge_config(tmp_path: Path) -> Path:
    """Every awkward case preprocess must survive, in one small dataset."""
    bad_shape = np.zeros((21, 21, 21, 4), dtype=bool)
    write_h5(
        tmp_path / "v.h5",
        {
            "d1": {
                "A": {
                    "1": grid(1),
                    "2": grid(2, np.uint8),
                    "3": grid(3, np.float32),
                    "4": bad_shape,
                    "52": grid(52),
                    "52A": grid(520),
                    "53A": grid(53),
                    "99": grid(99),
                }
            },
            "d2": {"A": {"10": grid(10), "11": grid(11)}},
            "d3": {"A": {"5": grid(5)}},
            "d5": {"A": {"1": grid(7)}},
            "d6": {"A": {"1": grid(8)}},  # in no split
        },
    )
    rows = []
    for resid in (1, 2, 3, 4, 52, 53):
        rows += [("d1", resid, "ALA", t, 0.1 + resid / 1000) for t in (320.0, 450.0)]
    rows += [
        ("d1", 1, "ALA", 348.0, float("nan")),
        ("d1", 1, "ALA", 379.0, float("inf")),
        ("d1", 1, "ALA", 413.0, -0.2),
        ("d1", 2, "ALA", 320.0, 0.5),
    ]  # last: duplicate
    rows += [("d2", r, "GLY", t, 0.2) for r in (10, 11, 12) for t in (320.0, 379.0)]
    rows += [("d3", 5, "SER", 500.0, 0.3), ("d4", 1, "SER", 320.0, 0.3)]
    pd.DataFrame(
        rows, columns=["domain_id", "resid", "resname", "temperature_feature", "target_rmsf"]
    ).to_csv(tmp_path / "r.csv", index=False)
    (tmp_path / "train.txt").write_bytes(b"# train\r\nd1\r\n\r\n  d2  \r\n")
    (tmp_path / "val.txt").write_text("d3\n")
    (tmp_path / "test.txt").write_text("d4\nd5 # no CSV rows\n")
    cfg = {
        "input": {
            "voxel_file": "v.h5",
            "aggregated_rmsf_file": "r.csv",
            "train_split_file": "train.txt",
            "val_split_file": "val.txt",
            "test_split_file": "test.txt",
        },
        "data": {"processed_dir": "proc"},
        "output": {"base_dir": "out", "run_name": "edge"},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    return tmp_path / "c.yaml"


def test_preprocess_survives_every_edge_case(edge_config: Path) -> None:
    cfg = load_config(str(edge_config))
    res = preprocess.run(cfg)
    c = res.counts
    assert c["non_finite_or_negative_target"] == 3
    assert c["duplicate_rows"] == 1
    assert c["ambiguous_voxel_residues"] == 1  # 52A beside 52
    assert c["voxel_residues_not_in_csv"] == 1  # d1/99
    assert c["csv_residues_not_in_voxels"] == 1  # d2/12
    assert c["voxel_domains_in_no_split"] == 1  # d6
    assert c["failed_domains"] == 2

    master = pd.read_parquet(res.master_samples)
    for col in (
        "domain_id",
        "chain_id",
        "resid_str",
        "resid",
        "resname",
        "raw_temp",
        "target_rmsf",
        "split",
    ):
        assert col in master.columns
    d1 = master[master.domain_id == "d1"]
    assert sorted(set(d1.resid_str)) == ["1", "2", "3", "4", "52", "53A"]
    assert d1.loc[d1.resid_str == "53A", "resid"].unique().tolist() == [53]
    first = d1.loc[(d1.resid_str == "2") & (d1.raw_temp == 320), "target_rmsf"]
    assert first.tolist() == pytest.approx([0.102])  # the duplicate (0.5) was dropped
    assert np.isfinite(master.target_rmsf).all() and (master.target_rmsf >= 0).all()
    assert set(master.split) == {"train", "val"}
    assert len(master) == 12 + 4 + 1

    failed = Path(res.failed_domains).read_text()
    assert "d4\tnot in voxel file" in failed
    assert "d5\tno rows in RMSF CSV" in failed
    # min/max from the training split only: d3's 500 K (val) does not widen it
    assert json.loads(Path(res.temp_scaling).read_text()) == {"temp_min": 320.0, "temp_max": 450.0}


def test_voxels_are_cast_and_bad_shapes_skipped_at_read_time(edge_config: Path, caplog) -> None:
    cfg = load_config(str(edge_config))
    preprocess.run(cfg)
    master = read_master_samples(RunPaths.from_config(cfg).master_samples, ("train",))
    index = SampleIndex.from_table(master, TemperatureScaler(320, 450))
    source = open_voxel_source(cfg.input.voxel_file)
    lo, hi = index.domain_res[0], index.domain_res[1]
    voxels, ok = source.read_domain("d1", index.res_chain[lo:hi], index.res_key[lo:hi])
    keys = list(index.res_key[lo:hi])
    assert ok.tolist() == [k != "4" for k in keys]
    assert "skipping residue d1/A/4" in caplog.text
    assert voxels.dtype == np.uint8 and voxels.shape[1:] == (5, 21, 21, 21)
    for key, seed, dtype in (("2", 2, np.uint8), ("3", 3, np.float32)):
        expected = grid(seed, dtype).astype(bool).transpose(3, 0, 1, 2)
        assert np.array_equal(voxels[keys.index(key)], expected.astype(np.uint8))


def test_no_samples_is_a_clear_error(edge_config: Path) -> None:
    cfg = load_config(
        str(edge_config), ["input.aggregated_rmsf_file=" + str(edge_config.parent / "e.csv")]
    )
    (edge_config.parent / "e.csv").write_text(
        "domain_id,resid,resname,temperature_feature,target_rmsf\n"
    )
    with pytest.raises(InputDataError, match="no samples left"):
        preprocess.run(cfg)


def test_missing_csv_column_is_named(edge_config: Path) -> None:
    bad = edge_config.parent / "bad.csv"
    bad.write_text("domain_id,resid,resname,temp\nd1,1,ALA,320\n")
    cfg = load_config(str(edge_config), [f"input.aggregated_rmsf_file={bad}"])
    with pytest.raises(InputDataError, match="lacks required column.*temperature_feature"):
        preprocess.run(cfg)


def test_missing_voxel_file_is_named(edge_config: Path) -> None:
    cfg = load_config(str(edge_config), ["input.voxel_file=/no/such/file.h5"])
    with pytest.raises(InputDataError, match="'input.voxel_file' not found: /no/such/file.h5"):
        preprocess.run(cfg)


def _two_chain_config(tmp_path: Path, csv_rows: list[tuple], with_chain: bool) -> Path:
    """One domain whose voxels have chains A and B with the same residue numbers."""
    import h5py

    with h5py.File(tmp_path / "v.h5", "w") as f:
        for chain, names in (("A", ("ALA", "GLY", "SER")), ("B", ("LYS", "HIS", "TRP"))):
            for i, name in enumerate(names, start=1):
                ds = f.create_dataset(f"d1/{chain}/{i}", data=grid(10 * i + ord(chain)))
                ds.attrs["label"] = name
        f.create_dataset("d2/A/1", data=grid(3)).attrs["label"] = "ALA"
    cols = ["domain_id", "chain_id", "resid", "resname", "temperature_feature", "target_rmsf"]
    table = pd.DataFrame(csv_rows, columns=cols)
    (table if with_chain else table.drop(columns="chain_id")).to_csv(tmp_path / "r.csv")
    (tmp_path / "train.txt").write_text("d1\n")
    (tmp_path / "val.txt").write_text("d2\n")
    (tmp_path / "test.txt").write_text("")
    cfg = {
        "input": {
            "voxel_file": "v.h5",
            "aggregated_rmsf_file": "r.csv",
            **{f"{s}_split_file": f"{s}.txt" for s in ("train", "val", "test")},
        },
        "data": {"processed_dir": "processed"},
        "output": {"base_dir": "outputs"},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    return tmp_path / "c.yaml"


def test_a_chain_column_keys_residues_of_several_chains(tmp_path: Path) -> None:
    rows = [("d1", c, i, n, 320.0, 0.1 * i + (0.5 if c == "B" else 0)) for c, names in
            (("A", ("ALA", "GLY", "SER")), ("B", ("LYS", "HSD", "TRP")))
            for i, n in enumerate(names, start=1)]  # fmt: skip
    rows.append(("d2", "A", 1, "ALA", 320.0, 0.2))
    res = preprocess.run(load_config(str(_two_chain_config(tmp_path, rows, with_chain=True))))
    master = pd.read_parquet(res.master_samples).query("domain_id == 'd1'")
    keys = zip(master.chain_id, master.resid, strict=True)
    got = dict(zip(keys, master.target_rmsf, strict=True))
    assert got == pytest.approx({("A", 1): 0.1, ("A", 2): 0.2, ("A", 3): 0.3,
                                 ("B", 1): 0.6, ("B", 2): 0.7, ("B", 3): 0.8})  # fmt: skip
    assert res.counts["ambiguous_voxel_residues"] == 0
    assert res.counts["resname_label_mismatches"] == 0  # HSD is HIS


def test_csv_resnames_that_differ_from_the_voxel_labels_are_counted_and_skipped(
    tmp_path: Path,
) -> None:
    """d1's CSV numbered one off from its voxels (ALA GLY SER): resid 1 says GLY, 2 SER."""
    rows = [("d1", "A", 1, "GLY", 320.0, 0.1), ("d1", "A", 2, "SER", 320.0, 0.2),
            ("d1", "A", 3, "SER", 320.0, 0.3), ("d2", "A", 1, "ALA", 320.0, 0.2)]  # fmt: skip
    res = preprocess.run(load_config(str(_two_chain_config(tmp_path, rows, with_chain=False))))
    master = pd.read_parquet(res.master_samples).query("domain_id == 'd1'")
    assert res.counts["resname_label_mismatches"] == 2  # resids 1 and 2; 3 is SER either way
    assert sorted(master.resid) == [3] and set(master.chain_id) == {"A"}
    assert res.counts["ambiguous_voxel_residues"] == 3  # chain B shares A's numbers


@pytest.mark.slow
@pytest.mark.parametrize("point", ["atomic.replace:1", "atomic.replace:2"])
def test_kill_9_during_preprocess_then_a_rerun_writes_the_same(demo_config: Path, point) -> None:
    """master_samples.parquet (1) and the processed scaling (2) whole, not yet in place."""
    import os
    import subprocess
    import sys

    paths = RunPaths.from_config(load_config(str(demo_config)))
    cmd = [sys.executable, "-m", "voxelflex", "preprocess", "--config", str(demo_config), "-q"]
    env = {**os.environ, "PIPEKIT_CRASH_AT": point}
    assert subprocess.run(cmd, env=env, timeout=120).returncode == -9
    if Path(paths.master_samples).exists():  # never half a file
        pd.read_parquet(paths.master_samples)
    # the rerun and an uninterrupted run after it, in this process (only the kill needs one
    # of its own)
    assert main(cmd[3:]) == 0
    first = Path(paths.master_samples).read_bytes()
    assert main(cmd[3:]) == 0  # an uninterrupted run: the same
    assert Path(paths.master_samples).read_bytes() == first
    assert json.loads(Path(paths.processed_temp_scaling).read_text()) == json.loads(
        Path(paths.temp_scaling).read_text()
    )
