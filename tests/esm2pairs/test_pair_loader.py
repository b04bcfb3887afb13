"""The pair loader at scale: batches from an s3:// cache fetch about the bytes they use
(measured on the wire, against a real S3 API on loopback), and the epoch's order is drawn
once, not per batch."""

from __future__ import annotations

import time
from pathlib import Path

import h5py
import numpy as np

from bench.wire import counting_relay
from esm2pairs.data.pair_loader import PairBatches

ROWS, DIM = 16_000, 640  # 20 MB of fp16 rows: far more than a batch needs


def _store(path: Path, rows: int = ROWS, dim: int = DIM) -> np.ndarray:
    emb = np.random.default_rng(0).standard_normal((rows, dim)).astype(np.float16)
    with h5py.File(path, "w") as f:  # as the cache writes it: contiguous, uncompressed
        f.create_dataset("emb", data=emb)
        f.create_dataset("emb_keys", data=np.array([f"k{i}" for i in range(rows)], "S"))
    return emb


def test_batches_from_s3_fetch_about_the_rows_they_use(tmp_path: Path, s3, s3_endpoint) -> None:
    from fsspec.config import conf

    emb = _store(tmp_path / "master.h5")
    s3.put_file(str(tmp_path / "master.h5"), "voxelflex/esm/master.h5")
    rng = np.random.default_rng(1)
    n_pairs = 50_000
    a, b = rng.integers(0, ROWS, n_pairs), rng.integers(0, ROWS, n_pairs)
    labels = rng.integers(0, 2, n_pairs)
    with counting_relay(s3_endpoint) as relay:
        # this test's filesystem talks to S3 through the relay
        conf["s3"] = {"endpoint_url": f"http://127.0.0.1:{relay.port}"}
        batches = PairBatches("s3://voxelflex/esm/master.h5", a, b, labels, 32, True, seed=2)
        batches._emb()  # opening reads the file's metadata only
        opened = relay.received
        assert opened < 300_000, f"opening fetched {opened:,} B"
        for i in range(3):
            before = relay.received
            ea, eb, _ = batches[i]
            fetched = relay.received - before
            idx = batches.order()[i * 32 : (i + 1) * 32]
            np.testing.assert_array_equal(ea.numpy(), emb[a[idx]].astype(np.float32))
            np.testing.assert_array_equal(eb.numpy(), emb[b[idx]].astype(np.float32))
            needed = len(np.unique(np.r_[a[idx], b[idx]])) * DIM * 2
            # the rows' bytes plus each response's headers; the store is 250x larger
            assert needed <= fetched < 2 * needed, f"batch {i}: {fetched:,} B for {needed:,} B"


def test_adjacent_rows_come_in_one_range_and_in_their_order(tmp_path: Path, s3) -> None:
    from esm2pairs.data.pair_loader import RemoteRows

    emb = _store(tmp_path / "small.h5", rows=500, dim=8)
    s3.put_file(str(tmp_path / "small.h5"), "voxelflex/esm/small.h5")
    rows = RemoteRows("s3://voxelflex/esm/small.h5")
    for want in ([0], [499], [3, 4, 5, 9, 400, 401, 499], list(range(0, 500, 7))):
        np.testing.assert_array_equal(rows[np.array(want)], emb[want])


def test_the_order_is_drawn_once_per_epoch_not_per_batch(tmp_path: Path) -> None:
    _store(tmp_path / "m.h5", rows=1000, dim=8)
    n = 2_000_000
    rng = np.random.default_rng(0)
    a, b, labels = rng.integers(0, 1000, n), rng.integers(0, 1000, n), rng.integers(0, 2, n)
    batches = PairBatches(str(tmp_path / "m.h5"), a, b, labels, 64, True, seed=3)
    t0 = time.perf_counter()
    batches[0]  # draws the epoch's order (2M pairs)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(1, 21):
        batches[i]
    rest = (time.perf_counter() - t0) / 20
    assert rest * 10 < first, (
        f"a batch took {rest * 1e3:.1f} ms after the first's {first * 1e3:.1f}"
    )

    order = batches.order()
    assert np.array_equal(np.sort(order), np.arange(n))
    batches.set_epoch(1)
    assert not np.array_equal(batches.order(), order)
    batches.set_epoch(0)
    assert np.array_equal(batches.order(), order)


def test_staged_rows_are_fetched_once_and_read_from_memory_every_epoch(
    tmp_path: Path, s3, s3_endpoint, caplog
) -> None:
    from fsspec.config import conf

    from esm2pairs.data.pair_loader import loader, stage_in_memory

    emb = _store(tmp_path / "master.h5")
    s3.put_file(str(tmp_path / "master.h5"), "voxelflex/esm/staged.h5")
    rng = np.random.default_rng(4)
    used = np.r_[1_000:2_500, 9_000:10_500]  # the proteins the pairs name: two runs of rows
    n_pairs = 20_000
    a, b = rng.choice(used, n_pairs), rng.choice(used, n_pairs)
    labels = rng.integers(0, 2, n_pairs)
    uri = "s3://voxelflex/esm/staged.h5"
    with counting_relay(s3_endpoint) as relay:
        conf["s3"] = {"endpoint_url": f"http://127.0.0.1:{relay.port}"}
        train = PairBatches(uri, a[:15_000], b[:15_000], labels[:15_000], 256, True, seed=5)
        val = PairBatches(uri, a[15_000:], b[15_000:], labels[15_000:], 256, False)
        with caplog.at_level("INFO", logger="esm2pairs.data.pair_loader"):
            assert stage_in_memory([train, val])
        assert "fetched the 3000 rows" in caplog.text
        staged = relay.received
        needed = len(np.unique(np.r_[a, b])) * DIM * 2
        # every row the two splits use, once, and the file's metadata (the store is 20 MB)
        assert needed <= staged < needed + 300_000, (staged, needed)
        for epoch in (1, 2):  # epochs and the validation pass read memory, not the store
            train.set_epoch(epoch)
            got = [(ea, eb) for ea, eb, _ in loader(train, 0)]
            assert relay.received == staged
        for i, (ea, eb) in enumerate(got):
            idx = train.order()[i * 256 : (i + 1) * 256]
            np.testing.assert_array_equal(ea.numpy(), emb[a[idx]].astype(np.float32))
            np.testing.assert_array_equal(eb.numpy(), emb[b[idx]].astype(np.float32))
        ea, eb, _ = val[len(val) - 1]
        np.testing.assert_array_equal(eb.numpy(), emb[b[15_000:][-len(eb) :]].astype(np.float32))
        assert relay.received == staged


def test_rows_over_the_memory_share_are_read_batch_by_batch(tmp_path: Path, s3, caplog) -> None:
    from esm2pairs.data.pair_loader import loader, stage_in_memory

    emb = _store(tmp_path / "big.h5", rows=2_000, dim=64)
    s3.put_file(str(tmp_path / "big.h5"), "voxelflex/esm/big.h5")
    rng = np.random.default_rng(6)
    a, b = rng.integers(0, 2_000, 5_000), rng.integers(0, 2_000, 5_000)
    batches = PairBatches("s3://voxelflex/esm/big.h5", a, b, np.zeros(5_000), 64, False)
    with caplog.at_level("INFO", logger="esm2pairs.data.pair_loader"):
        assert not stage_in_memory([batches], share=1e-9)  # no pod has room for 256 kB here
    assert "reading s3://voxelflex/esm/big.h5 batch by batch" in caplog.text
    assert batches.staged is None
    # DataLoader workers (forked) each open the store and read their batches by range
    got = [ea for ea, _, _ in loader(batches, 2)]
    np.testing.assert_array_equal(np.concatenate(got), emb[a].astype(np.float32))
    assert not stage_in_memory([PairBatches(str(tmp_path / "big.h5"), a, b, a, 64)])  # local


def test_a_staging_pass_spans_a_bounded_part_of_the_store(tmp_path: Path, s3, monkeypatch) -> None:
    """Rows scattered under the merge gap apart are fetched with their gaps: each pass must
    span at most STAGE_PASS_BYTES of the store, however few rows it wants."""
    from esm2pairs.data import pair_loader

    emb = _store(tmp_path / "sparse.h5")
    s3.put_file(str(tmp_path / "sparse.h5"), "voxelflex/esm/sparse.h5")
    monkeypatch.setattr(pair_loader, "STAGE_PASS_BYTES", 1 << 20)  # 819 rows of 1,280 B
    spans = []
    read = pair_loader.RemoteRows.read

    def recorded(self, rows, merge_gap):
        spans.append((int(rows[-1]) - int(rows[0]) + 1) * self.row_bytes)
        return read(self, rows, merge_gap)

    monkeypatch.setattr(pair_loader.RemoteRows, "read", recorded)
    used = np.arange(7, ROWS, 50)  # 64 kB apart: merged into one range with their gaps
    batches = PairBatches("s3://voxelflex/esm/sparse.h5", used, used[::-1], used, 64, False)
    assert pair_loader.stage_in_memory([batches])
    assert len(spans) > 1 and max(spans) <= 1 << 20, spans
    ea, eb, _ = batches[2]
    np.testing.assert_array_equal(ea.numpy(), emb[used[128:192]].astype(np.float32))
    np.testing.assert_array_equal(eb.numpy(), emb[used[::-1][128:192]].astype(np.float32))
