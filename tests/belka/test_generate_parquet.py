"""generate_parquet on the BELKA layout: one row per molecule, labels, the validation split by
building blocks, bounded buckets, and what it does with bad inputs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from belka import PROTEINS
from belka.cli import main
from belka.config import load_config
from belka.steps import generate_parquet
from pipekit.errors import InputDataError
from tests.belka.conftest import write_config

BLOCKS = ["buildingblock1_smiles", "buildingblock2_smiles", "buildingblock3_smiles"]


def _molecules(cfg) -> pd.DataFrame:
    generate_parquet.run(cfg)
    return pd.read_parquet(Path(cfg.data.working) / "belka.parquet")


def test_one_row_per_molecule_with_the_inputs_labels_and_ids(belka_cfg, belka_demo) -> None:
    mols = _molecules(belka_cfg)
    raw = pd.read_parquet(belka_demo.root / "raw" / "train.parquet")
    test = pd.read_parquet(belka_demo.root / "raw" / "test.parquet")
    extra = pd.read_csv(belka_demo.root / "raw" / "DNA_Labeled_Data.csv")
    assert mols["molecule_smiles"].is_unique
    assert len(mols) == raw["molecule_smiles"].nunique() + test["molecule_smiles"].nunique() + len(
        extra
    )
    assert not mols["molecule_smiles"].str.contains("[Dy]", regex=False).any()
    assert mols["molecule_smiles"].str.contains("[H]", regex=False).all()
    # the long table pivoted in memory, the whole file at once
    wide = raw.pivot(index="molecule_smiles", columns="protein_name", values="binds")
    ids = raw.pivot(index="molecule_smiles", columns="protein_name", values="id")
    wide.index = wide.index.str.replace("[Dy]", "[H]", regex=False)
    ids.index = ids.index.str.replace("[Dy]", "[H]", regex=False)
    got = mols.set_index("molecule_smiles").loc[wide.index]
    for p in PROTEINS:
        assert (got[f"binds_{p}"].astype(int) == wide[p]).all()
        assert (got[f"id_{p}"].astype(int) == ids[p]).all()
    assert set(got["subset"]) <= {0, 1}
    t = mols[mols["subset"] == 2]
    assert len(t) == test["molecule_smiles"].nunique()
    assert t[[f"binds_{p}" for p in PROTEINS]].isna().all().all()
    assert sorted(t[[f"id_{p}" for p in PROTEINS]].stack().astype(int)) == sorted(test["id"])
    # extra molecules: measured for sEH only (read_count >= 1), no building blocks
    e = mols[mols[BLOCKS[0]].isna()]
    assert len(e) == len(extra) and e["binds_BRD4"].isna().all() and e["binds_HSA"].isna().all()
    assert int(e["binds_sEH"].sum()) == int((extra["read_count"] >= 1).sum())


def test_validation_is_the_competitions_split(belka_cfg, belka_demo) -> None:
    """Non-shared: no block of the molecule occurs in training (Leash Bio's non-shared test
    molecules); shared: every block does; the demo's held-out library is the non-shared
    validation group and half its test molecules."""
    mols = _molecules(belka_cfg)
    train = mols[mols["subset"] == 0]
    seen = set(train[BLOCKS].stack())
    held = set((belka_demo.root / "raw" / "heldout_blocks.txt").read_text().split())
    assert not seen & held  # no training molecule has a held-out block
    val = mols[mols["subset"] == 1]
    non_shared = val[val["shared_blocks"] == False]  # noqa: E712 (a nullable column)
    shared = val[val["shared_blocks"] == True]  # noqa: E712
    assert len(non_shared) == belka_demo.non_shared_molecules == belka_demo.train_molecules * 2 // 5
    assert len(shared) > 0
    assert all(not set(r) & seen for r in non_shared[BLOCKS].itertuples(index=False))
    assert all(set(r) <= seen for r in shared[BLOCKS].itertuples(index=False))
    test = mols[mols["subset"] == 2]
    assert set(test["shared_blocks"].dropna()) == {True, False}
    for flag, group in test.groupby("shared_blocks"):
        blocks = [set(r) for r in group[BLOCKS].itertuples(index=False)]
        assert all((b <= seen) if flag else not (b & seen) for b in blocks)
    # the same split on every run
    again = _molecules(belka_cfg)
    assert again.equals(mols)


def test_a_molecule_mixing_held_out_and_training_blocks_is_in_neither_group(
    tmp_path: Path, belka_demo
) -> None:
    """Held-out blocks drawn at random (the default's way) leave molecules that mix them with
    training blocks: out of training, validated, and counted in neither group."""
    extra = {"validation": {"heldout_block_fraction": 0.3, "heldout_blocks_file": None}}
    cfg = load_config(str(write_config(tmp_path, belka_demo, extra)))
    res = generate_parquet.run(cfg)
    mols = pd.read_parquet(res.parquet)
    seen = set(mols.loc[mols["subset"] == 0, BLOCKS].stack())
    val = mols[(mols["subset"] == 1) & mols[BLOCKS[0]].notna()]
    n_seen = val[BLOCKS].isin(seen).sum(axis=1)
    mixed = val[(n_seen > 0) & (n_seen < 3)]
    assert len(mixed) > 0 and mixed["shared_blocks"].isna().all()
    assert res.validation_groups["neither"] == int(
        mols.loc[mols["subset"] == 1, "shared_blocks"].isna().sum()
    )
    assert res.validation_groups["non_shared"] == int((val["shared_blocks"] == False).sum())  # noqa: E712


def test_a_missing_heldout_blocks_file_is_named(tmp_path: Path, belka_demo) -> None:
    extra = {"validation": {"heldout_blocks_file": "nowhere.txt"}}
    cfg = load_config(str(write_config(tmp_path, belka_demo, extra)))
    with pytest.raises(InputDataError, match="validation.heldout_blocks_file.*nowhere.txt"):
        generate_parquet.run(cfg)


def test_small_buckets_give_the_same_molecules(tmp_path: Path, belka_demo) -> None:
    big = load_config(str(write_config(tmp_path / "a", belka_demo)))
    small = load_config(
        str(write_config(tmp_path / "b", belka_demo, {"features": {"rows_per_bucket": 200}}))
    )
    res = generate_parquet.run(small)
    assert res.buckets > 5
    a = _molecules(big).drop(columns="mol_id").sort_values("molecule_smiles")
    b = pd.read_parquet(res.parquet).drop(columns="mol_id").sort_values("molecule_smiles")
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))


def _copy_raw(belka_demo, tmp_path: Path) -> Path:
    raw = tmp_path / "raw"
    shutil.copytree(belka_demo.root / "raw", raw)
    return raw


def _generate(config: Path, raw: Path) -> int:
    """The CLI's generate_parquet on the inputs in `raw` (its exit code)."""
    return main(
        [
            "--quiet",
            "--config",
            str(config),
            "--step",
            "generate_parquet",
            "--set",
            f"data.root={raw}",
        ]
    )


def _cfg(tmp_path: Path, belka_demo, raw: Path):
    path = write_config(tmp_path, belka_demo)
    return path, load_config(str(path), [f"data.root={raw}"])


def test_rows_of_other_proteins_and_bad_labels_are_counted_skips(tmp_path, belka_demo) -> None:
    raw = _copy_raw(belka_demo, tmp_path)
    df = pd.read_parquet(raw / "train.parquet")
    df.loc[df.index[:5], "protein_name"] = "BRD9"
    df.loc[df.index[5:8], "binds"] = 7
    df.to_parquet(raw / "train.parquet", index=False)
    _, cfg = _cfg(tmp_path, belka_demo, raw)
    res = generate_parquet.run(cfg)
    assert res.skipped_rows["train"]["bad_protein"] == 5
    assert res.skipped_rows["train"]["bad_label"] == 3
    assert res.input_rows["train"] == len(df)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("drop_binds", "train.parquet: missing columns ['binds']"),
        ("empty_rows", "train.parquet: no rows"),
        ("zero_bytes", "train.parquet: not a parquet file"),
        ("no_test", "test.parquet: no such file"),
    ],
)
def test_broken_inputs_are_one_line_errors(tmp_path, belka_demo, capsys, damage, message) -> None:
    raw = _copy_raw(belka_demo, tmp_path)
    df = pd.read_parquet(raw / "train.parquet")
    if damage == "drop_binds":
        df.drop(columns="binds").to_parquet(raw / "train.parquet", index=False)
    elif damage == "empty_rows":
        pq.write_table(
            pa.Table.from_pandas(df.iloc[:0], preserve_index=False), raw / "train.parquet"
        )
    elif damage == "zero_bytes":
        (raw / "train.parquet").write_bytes(b"")
    else:
        (raw / "test.parquet").unlink()
    path, cfg = _cfg(tmp_path, belka_demo, raw)
    with pytest.raises(InputDataError, match="parquet"):
        generate_parquet.run(cfg)
    code = _generate(path, raw)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err


def test_an_extra_csv_without_its_columns_names_them(tmp_path, belka_demo, capsys) -> None:
    raw = _copy_raw(belka_demo, tmp_path)
    pd.DataFrame({"smiles": ["CCO"], "count": [1]}).to_csv(raw / "DNA_Labeled_Data.csv")
    path, _ = _cfg(tmp_path, belka_demo, raw)
    code = _generate(path, raw)
    err = capsys.readouterr().err.strip()
    assert code == 2 and "DNA_Labeled_Data.csv: missing columns" in err
    assert "new_structure" in err and len(err.splitlines()) == 1


def test_demo_data_takes_the_non_shared_group_size(tmp_path: Path, capsys) -> None:
    """`--non-shared N`: N of the labelled molecules are made of held-out blocks only (the
    validation group a larger demo widens); N not below `--molecules`, or more than the
    held-out blocks can make, is refused, naming the flag."""
    out = tmp_path / "d"
    args = ["demo-data", "--out", str(out), "--molecules", "300", "--test", "40"]
    assert main([*args, "--extra", "20", "--non-shared", "170"]) == 0
    held = set((out / "raw" / "heldout_blocks.txt").read_text().split())
    rows = pd.read_parquet(out / "raw" / "train.parquet")
    blocks = rows.drop_duplicates("molecule_smiles")[
        [f"buildingblock{i}_smiles" for i in (1, 2, 3)]
    ]
    all_held = sum(set(r) <= held for r in blocks.itertuples(index=False))
    assert all_held == 170
    assert main([*args, "--non-shared", "300"]) == 2
    assert "fewer than --molecules" in capsys.readouterr().err
    # 6 held-out first blocks x 57 amines, in unordered pairs: 6 * 57 * 56 / 2 molecules
    big = ["demo-data", "--out", str(tmp_path / "e"), "--molecules", "10000"]
    assert main([*big, "--non-shared", "9577"]) == 2
    assert "make 9576 distinct molecules" in capsys.readouterr().err


@pytest.mark.parametrize("step", ["get_vocab", "make_dataset"])
def test_a_step_before_generate_parquet_says_which_step_comes_first(
    tmp_path, belka_demo, capsys, step
) -> None:
    path = write_config(tmp_path, belka_demo)
    code = main(["--quiet", "--config", str(path), "--step", step])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "input file for 'data.working' not found: " in err[0]
    assert err[0].endswith("belka.parquet (run --step generate_parquet first)"), err


def test_without_config_the_plans_configs_config_yaml_is_read(
    tmp_path, belka_demo, monkeypatch, capsys
) -> None:
    """The plan's commands name no config (`--step generate_parquet` from the project
    folder): its configs/config.yaml is read where the folder has one, else the packaged."""
    monkeypatch.chdir(tmp_path)
    assert main(["--quiet", "--step", "get_vocab"]) == 2  # packaged data.working: data/raw
    assert "data/raw/belka.parquet (run --step generate_parquet first)" in capsys.readouterr().err
    write_config(tmp_path / "configs", belka_demo)
    assert main(["-v", "--step", "generate_parquet"]) == 0, capsys.readouterr().err
    assert (tmp_path / "configs" / "work" / "belka.parquet").is_file()
    assert "config: configs/config.yaml (the plan's" in capsys.readouterr().err
