"""The feature store: what make_dataset writes, a kill in the middle, molecules RDKit cannot
parse, and the stream's exactly-once pass over workers and ranks (local and S3)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from belka.config import load_config
from belka.data.dataset import StoreStream, make_loader
from belka.data.store import Store
from belka.steps import create_val_dataset, generate_parquet, get_vocab, make_dataset
from belka.tokenizer import Vocab
from tests.belka.conftest import run_belka, write_config


def _ids(stream: StoreStream, workers: int) -> list[int]:
    return [int(i) for b in make_loader(stream, workers) for i in b["mol_id"]]


def test_store_rows_match_the_molecule_table(prepared: Path) -> None:
    work = prepared / "work"
    store = Store.open(str(work / "belka.tfr"))
    mols = pd.read_parquet(work / "belka.parquet").set_index("mol_id")
    vocab = Vocab.load(str(work / "vocab.txt"))
    assert store.rows == len(mols) and len(store.shards) > 2
    arrays = store.read(1)
    for k in range(0, len(arrays["mol_id"]), 37):
        row = mols.loc[arrays["mol_id"][k]]
        ids, _ = vocab.encode(row["molecule_smiles"], store.manifest["max_length"])
        assert np.array_equal(arrays["tokens"][k], ids)
        labels = [
            -1 if pd.isna(row[f"binds_{p}"]) else row[f"binds_{p}"] for p in ("BRD4", "HSA", "sEH")
        ]
        assert arrays["labels"][k].tolist() == labels
        assert arrays["subset"][k] == row["subset"]
    val = Store.open(str(work / "belka_val.tfr"))
    assert val.rows == int((mols["subset"] == 1).sum()) == store.count((1,))


@pytest.mark.parametrize("workers", [0, 2])
def test_each_molecule_once_per_pass_over_ranks_and_workers(prepared: Path, workers) -> None:
    store = Store.open(str(prepared / "work" / "belka.tfr"))
    want = sorted(
        int(i)
        for s in range(len(store.shards))
        for i, sub in zip(store.read(s)["mol_id"], store.read(s)["subset"], strict=True)
        if sub in (0, 2)
    )
    for world in (1, 2, 3):
        seen: list[int] = []
        sizes = []
        for rank in range(world):
            stream = StoreStream(
                store,
                (0, 2),
                32,
                shuffle=True,
                seed=5,
                buffer_size=100,
                rank=rank,
                world_size=world,
            )
            stream.set_epoch(3)
            ids = _ids(stream, workers)
            assert len(ids) == len(stream)
            sizes.append(len(ids))
            seen += ids
        assert sorted(seen) == want, world
        assert max(sizes) - min(sizes) <= 1
    stream = StoreStream(store, (0, 2), 32, shuffle=True, seed=5, buffer_size=100)
    first = _ids(stream, 0)
    assert _ids(stream, 0) == first  # one epoch, one order
    stream.set_epoch(1)
    other = _ids(stream, 0)
    assert other != first and sorted(other) == sorted(first)


def test_a_killed_make_dataset_resumes_to_the_same_store(tmp_path, belka_demo) -> None:
    config = write_config(tmp_path / "a", belka_demo)
    cfg = load_config(str(config))
    generate_parquet.run(cfg)
    get_vocab.run(cfg)
    killed = run_belka(config, "--step", "make_dataset", crash="make_dataset.shard_written:3")
    assert killed.returncode == -9, killed.stderr
    work = tmp_path / "a" / "work" / "belka.tfr"
    assert not (work / "manifest.json").exists()  # an unfinished store reads as unfinished
    done = run_belka(config, "--step", "make_dataset")
    assert done.returncode == 0, done.stderr
    assert "(3 kept from an earlier run)" in done.stdout
    clean = write_config(tmp_path / "b", belka_demo)
    cfg_b = load_config(str(clean))
    for step in (generate_parquet, get_vocab, make_dataset):
        step.run(cfg_b)
    fresh = tmp_path / "b" / "work" / "belka.tfr"
    names = sorted(p.name for p in work.iterdir() if p.name.startswith("shard-"))
    assert names == sorted(p.name for p in fresh.iterdir() if p.name.startswith("shard-"))
    a, b = Store.open(str(work)), Store.open(str(fresh))
    for i in range(len(a.shards)):
        x, y = a.read(i), b.read(i)
        assert all(np.array_equal(x[k], y[k]) for k in x)


def test_unparsable_molecules_are_skipped_listed_and_still_submitted(tmp_path, belka_demo):
    raw = tmp_path / "raw"
    shutil.copytree(belka_demo.root / "raw", raw)
    test = pd.read_parquet(raw / "test.parquet")
    broken = test["molecule_smiles"].iloc[0]
    test.loc[test["molecule_smiles"] == broken, "molecule_smiles"] = "C1CC(N[Dy])"  # ring open
    test.to_parquet(raw / "test.parquet", index=False)
    cfg = load_config(str(write_config(tmp_path, belka_demo)), [f"data.root={raw}"])
    generate_parquet.run(cfg)
    get_vocab.run(cfg)
    res = make_dataset.run(cfg)
    assert res.skipped == 1
    failed = (tmp_path / "work" / "failed_molecules.txt").read_text().splitlines()
    assert len(failed) == 2 and "C1CC(N[H])" in failed[1] and "RDKit" in failed[1]
    create_val_dataset.run(cfg)
    from belka.steps import make_submission, train_model

    train_model.run(cfg, "clf", smoke=False)
    sub = make_submission.run(cfg)
    assert sub.rows == len(test) and sub.fallback_rows == 3
    csv = pd.read_csv(tmp_path / "work" / "submission.csv")
    assert sorted(csv["id"]) == sorted(test["id"]) and csv["binds"].between(0, 1).all()


def test_a_store_in_s3_read_by_two_loader_workers(tmp_path, belka_demo, s3) -> None:
    config = write_config(tmp_path, belka_demo)
    cfg = load_config(str(config), ["data.working=s3://voxelflex/belka/work"])
    for step in (generate_parquet, get_vocab, make_dataset):
        step.run(cfg)
    assert s3.exists("voxelflex/belka/work/belka.tfr/manifest.json")
    store = Store.open("s3://voxelflex/belka/work/belka.tfr")
    stream = StoreStream(store, (0, 1, 2), 50, shuffle=True, seed=1, buffer_size=120)
    ids = _ids(stream, 2)
    assert sorted(ids) == list(range(store.rows))


def _files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def test_a_fanned_out_store_is_the_one_process_store_byte_for_byte(
    prepared: Path, prepared_cfg, tmp_path: Path
) -> None:
    """Three parts featurized apart and gathered give the store one process made; a part
    that lost a shard or holds a torn one is refused by name, and its re-run redoes only
    that shard."""
    from dataclasses import replace

    from belka.paths import Layout
    from pipekit.errors import InputDataError

    one = prepared / "work" / "belka.tfr"
    n = len(Store.open(str(one)).shards)
    base = Layout.of(prepared_cfg)
    ranges = make_dataset.plan(prepared_cfg, base, 3)
    assert [r["first"] for r in ranges] == [0] + [r["stop"] for r in ranges[:-1]]
    assert ranges[-1]["stop"] == n and len(ranges) == 3 and n >= 4
    parts = [tmp_path / f"part{k}" / "belka.tfr" for k in range(3)]
    for r, part in zip(ranges, parts, strict=True):
        make_dataset.run_part(prepared_cfg, replace(base, store=str(part)), r["first"], r["stop"])

    def gather(name: str):
        out = replace(base, store=str(tmp_path / name / "belka.tfr"), working=str(tmp_path / name))
        return make_dataset.finish(prepared_cfg, out, [str(p) for p in parts])

    res = gather("gathered")
    assert res.shards == n and res.molecules == Store.open(str(one)).rows
    assert _files(tmp_path / "gathered" / "belka.tfr") == _files(one)
    failed = (prepared / "work" / "failed_molecules.txt").read_bytes()
    assert (tmp_path / "gathered" / "failed_molecules.txt").read_bytes() == failed

    lost = ranges[1]["first"]
    (parts[1] / f"shard-{lost:05d}.npz").unlink()
    with pytest.raises(InputDataError, match=f"shard {lost} \\(shard-{lost:05d}.npz\\) is missing"):
        gather("missing")
    torn = parts[2] / f"shard-{ranges[2]['first']:05d}.npz"
    torn.write_bytes(torn.read_bytes()[:1000])
    again = make_dataset.run_part(
        prepared_cfg, replace(base, store=str(parts[1])), ranges[1]["first"], ranges[1]["stop"]
    )
    assert again.reused_shards == ranges[1]["stop"] - ranges[1]["first"] - 1
    with pytest.raises(InputDataError, match=f"{torn.name}: 1000 bytes that do not match"):
        gather("torn")
    # a torn shard in a finished store is refused where it is read, too
    copy = tmp_path / "copy"
    shutil.copytree(one, copy)
    shard = copy / "shard-00001.npz"
    shard.write_bytes(shard.read_bytes()[:-10] + b"0" * 10)
    with pytest.raises(InputDataError, match="do not match the manifest's SHA-256"):
        Store.open(str(copy)).read(1)
