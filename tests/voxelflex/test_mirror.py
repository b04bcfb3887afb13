"""The packed store: exact round trip, resume after a crash, corruption errors, s3."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fsspec.core import url_to_fs

from pipekit.errors import InputDataError
from voxelflex.cli import main
from voxelflex.data import packed
from voxelflex.data.loader import StreamSettings, VoxelStream, make_loader
from voxelflex.data.packed_source import PackedVoxelSource
from voxelflex.data.samples import SampleIndex
from voxelflex.data.sources import open_voxel_source
from voxelflex.data.temperature import TemperatureScaler
from voxelflex.data.voxels import HDF5VoxelSource
from voxelflex.steps import mirror


def _same_voxels(src_uri: str, store_uri: str) -> int:
    """Every residue of every domain reads back from the store equal to the source."""
    src, store = HDF5VoxelSource(src_uri), open_voxel_source(store_uri)
    assert isinstance(store, PackedVoxelSource)
    assert sorted(store.domain_ids()) == sorted(src.domain_ids())
    n = 0
    for domain in src.domain_ids():
        listed = src.list_residues([domain])
        assert len(store.list_residues([domain])) == len(listed)
        chains, keys = listed.chain_id.to_numpy(), listed.resid_str.to_numpy()
        want, ok_src = src.read_domain(domain, chains, keys)
        got, ok = store.read_domain(domain, chains, keys)
        assert ok.all() and ok_src.all()
        assert np.array_equal(got, want)
        n += len(listed)
    return n


@pytest.mark.parametrize("fmt", packed.FORMATS)
def test_every_voxel_reads_back_equal(fmt: str, demo_data, tmp_path: Path) -> None:
    dst = str(tmp_path / "store")
    res = mirror.run(str(demo_data.voxel_file), dst, fmt=fmt, chunk_rows=100)
    assert res.n_rows == demo_data.n_residues == _same_voxels(str(demo_data.voxel_file), dst)
    assert res.n_chunks == -(-res.n_rows // 100) == res.chunks_written
    index = packed.read_index(dst)
    assert list(index.columns) == ["domain_id", "chain_id", "resid_str", "row", "valid"]
    assert index.row.tolist() == list(range(res.n_rows))
    # rows ordered by domain, chain, residue number
    num = index.resid_str.str.extract(r"(-?\d+)")[0].astype(int)
    ordered = index.assign(num=num).sort_values(["domain_id", "chain_id", "num"]).row
    assert ordered.tolist() == index.row.tolist()
    attrs = packed.open_chunks(dst).attrs
    assert attrs["complete"] and attrs["source"] == str(demo_data.voxel_file)
    assert attrs["channels"] == ["C", "N", "O", "CA", "CB"] and attrs["voxel_shape"][0] == 5
    assert not os.path.exists(os.path.join(dst, packed.PROGRESS))
    assert res.bytes_stored / res.n_rows < 1000  # vs 185 KB per residue-temperature as float32


def _store_contents(dst: str) -> dict[str, bytes]:
    """Every file of a store, by relative path (progress markers are gone when complete)."""
    root = Path(dst)
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_interrupted_mirror_resumes_to_an_identical_store(demo_data, tmp_path, monkeypatch):
    src = str(demo_data.voxel_file)
    whole = str(tmp_path / "whole")
    mirror.run(src, whole, chunk_rows=64)

    crashed = str(tmp_path / "crashed")
    real_write = packed.ZarrChunks.write_chunk
    calls = {"n": 0}

    def dying_write(self, i, rows):
        calls["n"] += 1
        if calls["n"] == 4:
            # the process dies while this chunk's file is half written
            real_write(self, i, rows)
            path = Path(crashed, "voxels", "c", str(i), "0")
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
            raise KeyboardInterrupt
        real_write(self, i, rows)

    monkeypatch.setattr(packed.ZarrChunks, "write_chunk", dying_write)
    with pytest.raises(KeyboardInterrupt):
        mirror.run(src, crashed, chunk_rows=64)
    monkeypatch.setattr(packed.ZarrChunks, "write_chunk", real_write)

    with pytest.raises(InputDataError, match="incomplete"):
        PackedVoxelSource(crashed).domain_ids()  # readers refuse a store that is not finished
    resumed = mirror.run(src, crashed, chunk_rows=64)
    assert resumed.chunks_written == resumed.n_chunks - 3  # the half-written chunk is redone
    assert _store_contents(crashed) == _store_contents(whole)
    again = mirror.run(src, crashed, chunk_rows=64)  # complete: nothing to do
    assert again.chunks_written == 0


def test_a_changed_source_is_not_resumed(demo_data, tmp_path: Path) -> None:
    src = tmp_path / "voxels.hdf5"
    src.write_bytes(demo_data.voxel_file.read_bytes())
    dst = str(tmp_path / "store")
    mirror.run(str(src), dst, chunk_rows=64)
    os.utime(src, (1, 1))
    with pytest.raises(InputDataError, match="--overwrite"):
        mirror.run(str(src), dst, chunk_rows=64)
    assert mirror.run(str(src), dst, chunk_rows=64, overwrite=True).chunks_written > 0


def _samples_for(index) -> pd.DataFrame:
    """A minimal sample table (one temperature) for every residue of a store's index."""
    return pd.DataFrame(
        {
            "domain_id": index.domain_id,
            "chain_id": index.chain_id,
            "resid_str": index.resid_str,
            "raw_temp": 320.0,
            "target_rmsf": 0.1,
        }
    )


def test_a_corrupted_chunk_names_its_rows_and_domains(demo_data, tmp_path: Path) -> None:
    dst = str(tmp_path / "store")
    mirror.run(str(demo_data.voxel_file), dst, chunk_rows=64)
    index = packed.read_index(dst)
    domains_in_2 = set(index.loc[index.row.between(128, 191), "domain_id"])
    chunk = Path(dst, "voxels", "c", "2", "0")
    chunk.write_bytes(b"\x00garbage" * 50)
    source = PackedVoxelSource(dst)
    domain = sorted(domains_in_2)[0]
    listed = source.list_residues([domain])
    with pytest.raises(InputDataError, match=r"chunk 2 \(rows 128-191, domains .*") as err:
        source.read_domain(domain, listed.chain_id.to_numpy(), listed.resid_str.to_numpy())
    assert all(d in str(err.value) for d in domains_in_2)
    # in training, the same message ends the epoch (raised from the reading thread)
    index_ = SampleIndex.from_table(_samples_for(index), TemperatureScaler(320, 450))
    stream = VoxelStream(PackedVoxelSource(dst), index_, StreamSettings(32, 1, True, 16, 0))
    with pytest.raises(InputDataError, match=r"chunk 2 \(rows 128-191"):
        for _ in make_loader(stream, 0):
            pass
    chunk.unlink()  # a lost chunk reads back as zeros: caught too, not trained on
    with pytest.raises(InputDataError, match="chunk 2 .* empty residue rows"):
        PackedVoxelSource(dst).read_domain(
            domain, listed.chain_id.to_numpy(), listed.resid_str.to_numpy()
        )


def test_invalid_source_residues_are_flagged_not_dropped(tmp_path: Path) -> None:
    from tests.conftest import grid, write_h5

    src = write_h5(
        tmp_path / "v.hdf5",
        {"d1": {"A": {"1": grid(1), "2": np.zeros((4, 4, 4, 5), bool), "10": grid(2)}}},
    )
    dst = str(tmp_path / "store")
    res = mirror.run(str(src), dst, chunk_rows=2)
    assert res.invalid_rows == 1
    index = packed.read_index(dst)
    assert index.set_index("resid_str").valid.to_dict() == {"1": True, "2": False, "10": True}
    store = PackedVoxelSource(dst)
    assert store.list_residues(["d1"]).resid_str.tolist() == ["1", "10"]


def test_mirror_cli(demo_data, tmp_path: Path, capsys) -> None:
    dst = tmp_path / "cli_store"
    argv = ["mirror", "--src", str(demo_data.voxel_file), "--dst", str(dst), "-q"]
    assert main([*argv, "--chunk-rows", "128", "--format", "hdf5"]) == 0
    out = capsys.readouterr().out
    assert f"{demo_data.n_residues} residues" in out and "verified" in out
    assert (dst / packed.H5_FILE).is_file()
    assert main(["mirror", "--src", str(tmp_path / "absent.h5"), "--dst", str(dst)]) == 2
    assert "absent.h5" in capsys.readouterr().err


def test_s3_round_trip(demo_data, s3, tmp_path: Path) -> None:
    src = str(demo_data.voxel_file)
    dst = "s3://voxelflex/mirrors/demo"
    res = mirror.run(src, dst, chunk_rows=64)
    assert s3.exists("voxelflex/mirrors/demo/index.parquet")
    assert not s3.exists(f"voxelflex/mirrors/demo/{packed.PROGRESS}")
    assert _same_voxels(src, dst) == res.n_rows
    # the original HDF5 in object storage opens through the same interface
    s3.put(src, "voxelflex/raw/voxels.hdf5")
    raw = open_voxel_source("s3://voxelflex/raw/voxels.hdf5")
    assert isinstance(raw, HDF5VoxelSource) and sorted(raw.domain_ids()) == sorted(
        HDF5VoxelSource(src).domain_ids()
    )


def test_storage_options_from_config_reach_s3(demo_data, s3, s3_endpoint, monkeypatch):
    """No AWS_ENDPOINT_URL: the endpoint comes from `input.storage_options` instead."""
    from fsspec.config import conf

    mirror.run(str(demo_data.voxel_file), "s3://voxelflex/opts", chunk_rows=256)
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.setitem(conf, "s3", {})  # a new endpoint_url option: a new s3fs instance
    from pipekit.uri import apply_storage_options
    from voxelflex.config import config_from_dict

    cfg = config_from_dict({"input": {"storage_options": {"s3": {"endpoint_url": s3_endpoint}}}})
    apply_storage_options(cfg.input.storage_options)
    fs, _ = url_to_fs("s3://voxelflex/opts")
    assert fs.endpoint_url == s3_endpoint  # from the config, not the (removed) environment
    store = open_voxel_source("s3://voxelflex/opts")
    assert len(store.list_residues(store.domain_ids())) == demo_data.n_residues
    # the voxels too: chunks are fetched by signed GETs, signed with the same settings
    src = HDF5VoxelSource(str(demo_data.voxel_file))
    domain = src.domain_ids()[0]
    listed = src.list_residues([domain])
    keys = (listed.chain_id.to_numpy(), listed.resid_str.to_numpy())
    got, ok = store.read_domain(domain, *keys)
    assert ok.all() and np.array_equal(got, src.read_domain(domain, *keys)[0])


def test_a_zarr_layout_other_than_the_mirrors_is_refused(tmp_path: Path) -> None:
    """Chunks are decoded by the store's own code, for the layout `voxelflex mirror` writes:
    an array with other codecs is refused by name, not misread."""
    import zarr

    root = tmp_path / "other"
    zarr.create_array(
        store=str(root),
        name=packed.ARRAY,
        shape=(10, packed.ROW_BYTES),
        chunks=(5, packed.ROW_BYTES),
        dtype="uint8",
        attributes={"format": packed.FORMAT},
    )  # zarr's default codecs (zstd, no blosc)
    with pytest.raises(InputDataError, match=f"{root}.*re-run `voxelflex mirror`"):
        packed.open_chunks(str(root))


@pytest.mark.slow
def test_parallel_shards_make_the_same_store(demo_data, tmp_path: Path) -> None:
    """Plan, two writer processes at once, then a plain run: identical to one process."""
    import subprocess
    import sys

    src = str(demo_data.voxel_file)
    whole = str(tmp_path / "whole")
    mirror.run(src, whole, chunk_rows=32)
    dst = str(tmp_path / "sharded")
    cli = [sys.executable, "-m", "voxelflex", "mirror", "--src", src, "--dst", dst]
    cli += ["--chunk-rows", "32", "-q"]
    with pytest.raises(InputDataError, match="plan-only"):
        mirror.run(src, dst, chunk_rows=32, shard=(0, 2))
    assert mirror.run(src, dst, chunk_rows=32, plan_only=True).chunks_written == 0
    writers = [subprocess.Popen([*cli, "--shard", f"{k}/2"]) for k in range(2)]
    assert [w.wait(timeout=300) for w in writers] == [0, 0]
    total = packed.n_chunks(demo_data.n_residues, 32)
    assert len(list(Path(dst, packed.PROGRESS).iterdir())) == total  # every chunk written once
    final = mirror.run(src, dst, chunk_rows=32)
    assert final.complete and final.chunks_written == 0
    assert _store_contents(dst) == _store_contents(whole)
    runs = [mirror.shard_chunks(total, k, 3) for k in range(3)]
    assert [i for r in runs for i in r] == list(range(total))  # a partition, in order
    assert max(map(len, runs)) - min(map(len, runs)) <= 1


@pytest.mark.slow
@pytest.mark.parametrize(
    "point",
    [
        "atomic.replace:1",  # the row plan (index.parquet) whole, not yet in place
        "mirror.before_marker:2",  # a chunk stored, its progress marker not yet written
        "atomic.replace:3",  # a progress marker whole, not yet in place
        "atomic.replace:6",  # the final index.parquet (valid flags), not yet in place
    ],
)
def test_kill_9_during_mirror_then_a_rerun_completes_the_store(demo_data, tmp_path, point):
    """A real `voxelflex mirror` process killed with SIGKILL at a write point; the re-run,
    without --overwrite, ends with the store an uninterrupted run makes."""
    import os
    import subprocess
    import sys

    src = str(demo_data.voxel_file)
    whole = str(tmp_path / "whole")
    mirror.run(src, whole, chunk_rows=64)  # 4 chunks: plan, 4 markers, index, domains
    dst = tmp_path / "killed"
    cli = [sys.executable, "-m", "voxelflex", "mirror", "--src", src, "--dst", str(dst)]
    cli += ["--chunk-rows", "64", "-q"]
    env = {**os.environ, "PIPEKIT_CRASH_AT": point}
    assert subprocess.run(cli, env=env, timeout=120).returncode == -9
    assert subprocess.run(cli, timeout=120).returncode == 0
    contents = _store_contents(str(dst))
    assert not [name for name in contents if ".tmp-" in name]
    assert contents == _store_contents(whole)
