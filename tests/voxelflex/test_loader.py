from collections import Counter

import numpy as np
import pytest
import torch

from voxelflex.data import packed
from voxelflex.data.demo import DemoDataset
from voxelflex.data.loader import (
    StreamSettings,
    VoxelStream,
    batch_sizes,
    make_loader,
    shard_bounds,
    to_device,
    unpack_bits,
    unpack_bits_torch,
)
from voxelflex.data.packed_source import PackedVoxelSource
from voxelflex.data.samples import SampleIndex, read_master_samples
from voxelflex.data.sources import open_voxel_source
from voxelflex.data.temperature import TemperatureScaler
from voxelflex.data.voxels import HDF5VoxelSource
from voxelflex.paths import RunPaths
from voxelflex.steps import preprocess


@pytest.fixture
def train_index(demo_cfg) -> tuple[SampleIndex, object]:
    preprocess.run(demo_cfg)
    table = read_master_samples(RunPaths.from_config(demo_cfg).master_samples)
    return SampleIndex.from_table(table, TemperatureScaler(320, 450)), table


@pytest.fixture(params=["hdf5", "packed"])
def voxel_uri(request, demo_cfg, packed_store) -> str:
    """The same voxels as the per-residue HDF5 and as a packed store."""
    return demo_cfg.input.voxel_file if request.param == "hdf5" else packed_store


def _stream(
    uri: str, index: SampleIndex, shuffle: bool = True, batch: int = 50, seed: int = 0
) -> VoxelStream:
    settings = StreamSettings(batch, chunk_size=2, shuffle=shuffle, shuffle_buffer=16, seed=seed)
    return VoxelStream(open_voxel_source(uri), index, settings)


@pytest.mark.parametrize("workers", [0, 1, 3])
def test_every_sample_exactly_once_per_epoch(voxel_uri, train_index, workers: int) -> None:
    index, _ = train_index
    stream = _stream(voxel_uri, index)
    for epoch in (0, 1):
        stream.set_epoch(epoch)
        rows = []
        for batch in make_loader(stream, workers):
            assert batch["voxel_bits"].dtype == torch.uint8
            assert batch["voxel_bits"].shape[1:] == (packed.ROW_BYTES,)  # 8 voxels a byte
            assert len(batch["row"]) <= 50
            assert batch["voxel_index"].max() < len(batch["voxel_bits"])
            rows.append(batch["row"].numpy())
        counts = Counter(np.concatenate(rows).tolist())
        assert len(counts) == index.n_samples
        assert set(counts.values()) == {1}


def test_batches_carry_the_right_voxels_temps_and_targets(demo_cfg, voxel_uri, train_index) -> None:
    index, table = train_index
    scaler = TemperatureScaler(320, 450)
    f = HDF5VoxelSource(demo_cfg.input.voxel_file).file
    for batch in make_loader(_stream(voxel_uri, index), 0):
        for j in range(0, len(batch["row"]), 7):
            row = table.iloc[int(batch["row"][j])]
            raw = f[row.domain_id][row.chain_id][row.resid_str][()]
            grid = unpack_bits(batch["voxel_bits"])[batch["voxel_index"][j]].numpy()
            assert np.array_equal(grid, raw.transpose(3, 0, 1, 2).astype(np.uint8))
            assert batch["target"][j].item() == pytest.approx(row.target_rmsf, rel=1e-6)
            assert batch["temperature"][j, 0].item() == pytest.approx(
                float(scaler.scale(row.raw_temp))
            )


class CountingSource(HDF5VoxelSource):
    reads: Counter

    def read_domain(self, domain_id, chain_ids, resid_strs):
        self.reads[domain_id] += 1
        return super().read_domain(domain_id, chain_ids, resid_strs)


def test_each_voxel_read_once_and_shared_by_its_temperatures(demo_cfg, train_index) -> None:
    index, _ = train_index
    source = CountingSource(demo_cfg.input.voxel_file)
    source.reads = Counter()
    stream = VoxelStream(source, index, StreamSettings(64, 2, True, 16, 0))
    grids = samples = 0
    for batch in make_loader(stream, 0):
        grids += len(batch["voxel_bits"])
        samples += len(batch["row"])
    assert set(source.reads.values()) == {1} and len(source.reads) == index.n_domains
    # each residue's grid is shipped once per batch its temperatures land in, not per sample
    assert grids < samples / 4


def test_shuffle_is_seeded_per_epoch_and_val_order_is_stable(voxel_uri, train_index) -> None:
    index, _ = train_index

    def order(stream, epoch):
        stream.set_epoch(epoch)
        return np.concatenate([b["row"].numpy() for b in make_loader(stream, 0)])

    a, b = _stream(voxel_uri, index), _stream(voxel_uri, index)
    assert np.array_equal(order(a, 0), order(b, 0))
    assert not np.array_equal(order(a, 0), order(a, 1))
    fixed = _stream(voxel_uri, index, shuffle=False)
    assert np.array_equal(order(fixed, 0), order(fixed, 1))


def test_memory_is_bounded_by_the_shuffle_buffer(voxel_uri, train_index) -> None:
    """Residues held at once (read, not yet batched) never exceed the buffer plus one
    arriving block (a domain, or a storage chunk's rows), however many the epoch has."""
    index, _ = train_index
    stream = _stream(voxel_uri, index)
    assert sum(len(b["row"]) for b in stream) == index.n_samples
    if stream.plan is None:
        block = int(np.diff(index.domain_res).max())
    else:
        block = int(np.diff(stream.plan.offsets).max())
    cap = stream.settings.shuffle_buffer
    assert cap < stream.peak_buffered <= cap + block < index.n_residues


def test_to_device_makes_float_on_the_device(demo_cfg, train_index) -> None:
    index, _ = train_index
    batch = next(iter(make_loader(_stream(demo_cfg.input.voxel_file, index), 0)))
    voxels, vi, temp, target = to_device(batch, torch.device("cpu"))
    assert batch["voxel_bits"].dtype == torch.uint8 and voxels.dtype == torch.float32
    assert voxels.shape == (len(batch["voxel_bits"]), 5, 21, 21, 21)
    # the torch unpacking a GPU uses gives the same grids as numpy's on the CPU
    assert torch.equal(unpack_bits_torch(batch["voxel_bits"]), unpack_bits(batch["voxel_bits"]))
    assert torch.equal(voxels, unpack_bits(batch["voxel_bits"]).float())
    assert temp.shape == (len(target), 1) and vi.shape == target.shape


def test_demo_is_deterministic_and_rmsf_rises_with_temperature(
    tmp_path, demo_data: DemoDataset
) -> None:
    from voxelflex.steps.demo_data import make_demo_dataset

    again = make_demo_dataset(tmp_path, n_domains=6, seed=3, min_residues=30, max_residues=40)
    assert again.rmsf_csv.read_bytes() == demo_data.rmsf_csv.read_bytes()
    import pandas as pd

    df = pd.read_csv(demo_data.rmsf_csv)
    assert sorted(df.temperature_feature.unique()) == [320, 348, 379, 413, 450]
    per_res = df.pivot_table(
        index=["domain_id", "resid"], columns="temperature_feature", values="target_rmsf"
    )
    assert (per_res[450.0] > per_res[320.0]).mean() > 0.95
    assert {"relative_accessibility", "dssp"} <= set(df.columns)
    sizes = df.groupby("domain_id").resid.nunique()
    assert sizes.between(30, 40).all()


def test_worker_metadata_is_flat_numpy_not_python_objects(train_index) -> None:
    """Forked workers share these pages; object arrays would be copied by refcount writes."""
    import dataclasses

    index, _ = train_index
    for field in dataclasses.fields(index):
        arr = getattr(index, field.name)
        assert isinstance(arr, np.ndarray), field.name
        assert arr.dtype != object, field.name


class CountingPacked(PackedVoxelSource):
    reads: Counter

    def read_chunk(self, chunk_id, used):
        self.reads[chunk_id] += 1
        return super().read_chunk(chunk_id, used)


def test_packed_store_is_read_by_whole_chunks_once(packed_store, train_index) -> None:
    index, _ = train_index
    source = CountingPacked(packed_store)
    source.reads = Counter()
    stream = VoxelStream(source, index, StreamSettings(64, 2, True, 16, 0))
    rows = np.concatenate([b["row"].numpy() for b in make_loader(stream, 0)])
    assert sorted(rows.tolist()) == list(range(index.n_samples))
    # one decompression per storage chunk that holds training residues, not one per residue
    assert set(source.reads.values()) == {1}
    assert len(source.reads) == stream.plan.n_chunks < index.n_residues / 10


@pytest.mark.parametrize("batch", [1, 3, 7, 64])
def test_batches_split_residues_at_any_size(packed_store, train_index, batch: int) -> None:
    """A residue's temperatures may straddle batches: every batch but the last is full,
    every sample appears once, and each sample points at its own residue's grid."""
    index, table = train_index
    stream = _stream(packed_store, index, batch=batch)
    store = PackedVoxelSource(packed_store)
    grids: dict[tuple, np.ndarray] = {}  # each residue read once, however many batches hold it
    sizes, rows = [], []
    for b in make_loader(stream, 0):
        sizes.append(len(b["row"]))
        rows.append(b["row"].numpy())
        first = table.iloc[int(b["row"][0])]
        got = unpack_bits(b["voxel_bits"])[b["voxel_index"][0]].numpy()
        key = (first.domain_id, first.chain_id, first.resid_str)
        if key not in grids:
            grids[key] = store.read_domain(key[0], [key[1]], [key[2]])[0][0]
        assert np.array_equal(got, grids[key])
    assert set(sizes[:-1]) == {batch} and 0 < sizes[-1] <= batch
    assert sorted(np.concatenate(rows).tolist()) == list(range(index.n_samples))


def test_batch_sizes_and_shard_bounds() -> None:
    assert batch_sizes(100, 2, 64).tolist() == [64, 36]  # one process: full, then short
    assert batch_sizes(128, 2, 64).tolist() == [64, 64]
    assert batch_sizes(100, 3, 64).tolist() == [64, 18, 18]  # a small shard, more steps
    assert batch_sizes(5, 5, 1).tolist() == [1] * 5
    with pytest.raises(ValueError, match="cannot cut 3 samples into 4"):
        batch_sizes(3, 4, 64)
    samples = np.array([5, 5, 3, 5, 1, 5, 5, 2, 5, 5])
    bounds = shard_bounds(samples, 4)
    assert bounds[0] == 0 and bounds[-1] == len(samples)
    sums = np.add.reduceat(samples, bounds[:-1])
    assert sums.sum() == samples.sum() and np.all(abs(sums - samples.sum() / 4) < samples.max())


def _rank_batches(
    uri: str, index: SampleIndex, rank: int, world: int, workers: int, epoch: int, batch=50
):
    settings = StreamSettings(batch, 2, True, 16, 0, rank=rank, world_size=world)
    stream = VoxelStream(open_voxel_source(uri), index, settings)
    stream.set_epoch(epoch)
    return list(make_loader(stream, workers))


@pytest.mark.parametrize(("world", "workers"), [(2, 0), (2, 2), (3, 1)])
def test_ranks_times_workers_see_every_sample_once_in_equal_steps(
    voxel_uri, train_index, world: int, workers: int
) -> None:
    """What DDP needs: over all ranks x workers each sample once an epoch, and every rank
    the same number of batches (unequal counts hang the gradient all-reduce)."""
    index, _ = train_index
    for epoch in (0, 1):
        per_rank = [_rank_batches(voxel_uri, index, r, world, workers, epoch) for r in range(world)]
        assert len({len(b) for b in per_rank}) == 1
        rows = np.concatenate([b["row"].numpy() for batches in per_rank for b in batches])
        assert sorted(rows.tolist()) == list(range(index.n_samples))
        assert max(len(b["row"]) for batches in per_rank for b in batches) <= 50
    # the shards move with the epoch's shuffle, the same on every rank
    first = [_rank_batches(voxel_uri, index, 0, world, workers, e)[0]["row"] for e in (0, 1)]
    assert not torch.equal(first[0], first[1])


class HalfReadable(HDF5VoxelSource):
    """Every second residue of one domain cannot be read (a corrupt dataset)."""

    bad = ""

    def read_domain(self, domain_id, chain_ids, resid_strs):
        grids, ok = super().read_domain(domain_id, chain_ids, resid_strs)
        if domain_id == self.bad:
            ok[::2] = False
        return grids, ok


def test_unreadable_residues_keep_rank_step_counts_equal(demo_cfg, train_index, caplog) -> None:
    index, _ = train_index
    source = HalfReadable(demo_cfg.input.voxel_file)
    source.bad = str(index.domain_ids[int(np.argmax(np.diff(index.domain_res)))])
    counts = []
    for rank in (0, 1):
        settings = StreamSettings(20, 2, True, 16, 0, rank=rank, world_size=2)
        counts.append(sum(1 for _ in make_loader(VoxelStream(source, index, settings), 0)))
    assert counts[0] == counts[1]
    assert "repeating its last batch" in caplog.text
