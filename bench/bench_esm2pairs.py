"""ESM-2 pipeline benchmarks, each a ratio of two measurements taken side by side here.

1. Length-bucketed batching vs the table's own order: sequences/s of the embedder over the
   same sequences (lengths 30-1000, as protein tables mix them), same batch size, a small
   random ESM-2-shaped model (no weights can be downloaded here).
2. A re-run's cache hit rate and model calls (must be 100% and 0) and its time against the
   first run's.
3. The classifier's loader (pairs -> distinct cache rows -> batches) in pairs/s against a
   raw in-memory gather from the whole `emb` array read into memory; the same loader with
   the cache in S3 (moto's server in another process on loopback) in pairs/s against local,
   and the bytes it fetches per batch (counted on the wire by a relay) against the bytes of
   the rows the batch uses; and training's path from S3 at full size: every row the pairs
   use fetched once into memory (time, bytes on the wire), then whole epochs against local.
4. Pair building from 2k to 64k isolates with every function pair of ten functions: time
   per size and the slope of log(time) against log(isolates) (1 is linear).
5. Embedding fanned out: `embed --shard 0/1` then `--merge` against two shard processes at
   once (one core each) then `--merge`, wall time side by side; the merge's rows/s; the
   650M model's architecture (random weights, same arithmetic) in sequences/s on this CPU;
   and the wall time of 1M proteins on N GPUs from a per-GPU rate (given, see --gpu-rate).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from esm2pairs.config import load_config
from esm2pairs.data.cache import CacheMeta, MasterCache
from esm2pairs.data.pair_loader import PairBatches, loader, stage_in_memory
from esm2pairs.demo import AMINO, make_tiny_esm, protein_table
from esm2pairs.embedder import Embedder, length_batches
from esm2pairs.steps import embed, preprocess
from pipekit.progress import set_progress
from wire import CountingRelay, counting_relay


def bench_batching(tmp: Path, n: int, batch_size: int) -> None:
    model = make_tiny_esm(tmp / "bench_model", hidden=64, layers=4)
    rng = np.random.default_rng(0)
    lengths = np.clip(rng.lognormal(5.5, 0.7, n).astype(int), 30, 1000)
    seqs = ["".join(rng.choice(AMINO, n_)) for n_ in lengths]
    emb = Embedder(model, "mean", "last", 1022, "cpu")
    emb.embed(seqs[:4])  # warm-up
    naive = [list(range(i, min(i + batch_size, n))) for i in range(0, n, batch_size)]
    bucketed = list(length_batches(lengths.tolist(), batch_size, max_tokens=10**9))
    speed = {}
    for name, batches in (("table order", naive), ("length-bucketed", bucketed)):
        t0 = time.perf_counter()
        for b in batches:
            emb.embed([seqs[i] for i in b])
        speed[name] = n / (time.perf_counter() - t0)
        pad = sum(len(b) * (max(lengths[b]) + 2) for b in batches) / (lengths.sum() + 2 * n)
        print(f"  {name:16s} {speed[name]:8.1f} seq/s  (padded tokens / real tokens {pad:.2f})")
    ratio = speed["length-bucketed"] / speed["table order"]
    print(f"  length-bucketed / table order: {ratio:.2f}x")


def bench_rerun(tmp: Path, isolates: int) -> None:
    model = make_tiny_esm(tmp / "rerun_model")
    raw = tmp / "raw.csv"
    protein_table(isolates, seed=0).to_csv(raw, index=False)
    cfg_path = tmp / "config.yaml"
    cfg_path.write_text(
        yaml.safe_dump(
            {
                "paths": {"data_dir": str(tmp / "data"), "raw_protein_file": str(raw)},
                "embeddings": {"model_ckpt": str(model)},
                "logging": {"show_progress": False},
            }
        )
    )
    cfg = load_config(str(cfg_path))
    preprocess.run(cfg)
    first, again = embed.run(cfg), embed.run(cfg)
    print(
        f"  first run: {first.n_sequences} distinct sequences of {first.n_ids} IDs, "
        f"{first.model_calls} model calls, {first.seconds:.2f} s"
    )
    print(
        f"  re-run: hit rate {again.hit_rate:.0%}, {again.model_calls} model calls, "
        f"{again.seconds:.2f} s ({first.seconds / again.seconds:.1f}x faster)"
    )
    assert again.hit_rate == 1.0 and again.model_calls == 0


def _make_cache(folder: Path, rows: int, dim: int) -> MasterCache:
    cache = MasterCache(str(folder), "master_esm2_embeddings.h5", "master_esm2_embeddings.parquet")
    meta = CacheMeta("bench", "sig", "mean", "last", "fp16", 1022, dim)
    rng = np.random.default_rng(0)
    for start in range(0, rows, 20_000):
        n = min(20_000, rows - start)
        cache.write_part(
            [f"k{start + i}" for i in range(n)], rng.standard_normal((n, dim)).astype(np.float16)
        )
    cache.merge(meta)
    return cache


def _pairs(rows: int, pairs: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.integers(0, rows, pairs), rng.integers(0, rows, pairs), rng.integers(0, 2, pairs)


def _epoch_rate(batches: PairBatches) -> float:
    """Pairs/s of one whole epoch through the loader (no workers)."""
    t0 = time.perf_counter()
    n = sum(len(y) for _, _, y in loader(batches, 0))
    return n / (time.perf_counter() - t0)


def bench_loader(tmp: Path, rows: int, dim: int, pairs: int, batch: int) -> None:
    cache = _make_cache(tmp / "cache", rows, dim)
    ra, rb, labels = _pairs(rows, pairs)
    loader_speed = _epoch_rate(PairBatches(cache.h5, ra, rb, labels, batch, shuffle=True))
    import h5py

    t0 = time.perf_counter()
    with h5py.File(cache.h5) as f:
        emb = f["emb"][:]  # the whole store in memory: the upper bound
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    order = np.random.default_rng(1).permutation(pairs)
    for i in range(0, pairs, batch):
        idx = order[i : i + batch]
        batch_ab = (emb[ra[idx]].astype(np.float32), emb[rb[idx]].astype(np.float32))
    assert batch_ab[0].shape[1] == dim
    raw_speed = pairs / (time.perf_counter() - t0)
    mb = emb.nbytes / 2**20
    print(f"  loader (row-wise from the store, one batch in memory): {loader_speed:,.0f} pairs/s")
    print(
        f"  raw in-memory gather: {raw_speed:,.0f} pairs/s (after reading the whole store, "
        f"{mb:.0f} MiB, into memory in {load_s:.2f} s)"
    )
    print(f"  loader / raw: {loader_speed / raw_speed:.2f}x")


def _rate(batches: PairBatches, n_batches: int) -> float:
    batches._emb()  # opened first, as a worker does once per epoch
    t0 = time.perf_counter()
    n = sum(len(batches[i][2]) for i in range(n_batches))
    return n / (time.perf_counter() - t0)


@contextmanager
def _in_s3(h5: str, key: str) -> Iterator[str]:
    """`h5` uploaded to moto's server on loopback (a process of its own) as s3://bench/key;
    the server stopped after the block."""
    import s3fs

    import s3_loopback

    server = s3_loopback.start("bench")
    try:
        s3fs.S3FileSystem(skip_instance_cache=True).put_file(h5, f"bench/{key}")
        yield f"s3://bench/{key}"
    finally:
        server.terminate()


@contextmanager
def _counted() -> Iterator[CountingRelay]:
    """S3 reads in the block go through a relay counting the bytes the server sends; the
    endpoint is restored after it (the relay is gone)."""
    from fsspec.config import conf

    with counting_relay(os.environ["AWS_ENDPOINT_URL"]) as relay:
        conf["s3"] = {"endpoint_url": f"http://127.0.0.1:{relay.port}"}
        try:
            yield relay
        finally:
            conf.pop("s3")


def bench_loader_s3(tmp: Path, rows: int, dim: int, pairs: int, batch: int) -> None:
    """From S3 against local on one store. moto answers a ranged GET by reading the whole
    object first, so its time per request grows with the store: the store here is small
    enough that the server's copy does not swamp the client's work."""
    cache = _make_cache(tmp / "cache_s3", rows, dim)
    ra, rb, labels = _pairs(rows, pairs)
    n_batches = 10  # each batch is up to 2 x batch ranged GETs to a Python server: a sample
    with _in_s3(cache.h5, "master.h5") as uri:
        local = _rate(PairBatches(cache.h5, ra, rb, labels, batch, shuffle=True), n_batches)
        remote = _rate(PairBatches(uri, ra, rb, labels, batch, shuffle=True), n_batches)
        print(
            f"  {rows:,} rows ({rows * dim * 2 / 2**20:.0f} MiB), first {n_batches} batches of "
            f"{batch}: local {local:,.0f} pairs/s, S3 (loopback) {remote:,.0f} pairs/s, "
            f"S3 / local {remote / local:.2f}x"
        )
        with _counted() as relay:
            batches = PairBatches(uri, ra, rb, labels, batch, shuffle=True, seed=1)
            batches._emb()
            fetched = needed = 0
            for i in range(n_batches):
                before = relay.received
                batches[i]
                fetched += relay.received - before
                idx = batches.order()[i * batch : (i + 1) * batch]
                needed += len(np.unique(np.r_[ra[idx], rb[idx]])) * dim * 2
    print(
        f"  bytes fetched per batch from S3: {fetched / n_batches:,.0f} for "
        f"{needed / n_batches:,.0f} B of rows used ({fetched / needed:.2f}x)"
    )


def bench_loader_staged(tmp: Path, rows: int, dim: int, pairs: int, batch: int) -> None:
    """Training's path from S3: the rows fetched once (sorted passes), then epochs from
    memory, against the same epochs from the store on local disk."""
    cache = _make_cache(tmp / "cache_staged", rows, dim)
    ra, rb, labels = _pairs(rows, pairs)
    with _in_s3(cache.h5, "staged.h5") as uri, _counted() as relay:
        remote = PairBatches(uri, ra, rb, labels, batch, shuffle=True)
        t0 = time.perf_counter()
        assert stage_in_memory([remote])
        fetch_s = time.perf_counter() - t0
        fetched = relay.received
        local = PairBatches(cache.h5, ra, rb, labels, batch, shuffle=True)
        rates = {"local": [], "s3": []}
        for epoch in range(1, 4):  # alternating, best of three each
            for name, b in (("local", local), ("s3", remote)):
                b.set_epoch(epoch)
                rates[name].append(_epoch_rate(b))
        assert relay.received == fetched  # the epochs read memory only
    needed = len(np.unique(np.r_[ra, rb])) * dim * 2
    loc, rem = max(rates["local"]), max(rates["s3"])
    epoch_s = pairs / rem
    print(
        f"  training from S3 ({rows:,} rows, {pairs:,} pairs): rows fetched once in "
        f"{fetch_s:.1f} s, {fetched / 2**20:,.0f} MiB on the wire for {needed / 2**20:,.0f} "
        f"MiB of rows used ({fetched / needed:.2f}x)"
    )
    print(
        f"  epochs: S3 (staged) {rem:,.0f} pairs/s, local {loc:,.0f} pairs/s, "
        f"S3 / local {rem / loc:.2f}x; the first epoch with the fetch "
        f"{pairs / (fetch_s + epoch_s):,.0f} pairs/s ({pairs / (fetch_s + epoch_s) / loc:.2f}x)"
    )


def bench_pair_building(sizes: list[int], n_funcs: int) -> None:
    from esm2pairs.steps.pairs import make_pairs

    funcs = [f"F{j}" for j in range(n_funcs)]
    times = []
    for n in sizes:
        rng = np.random.default_rng(0)
        iso = np.repeat([f"iso{i}" for i in range(n)], n_funcs)
        func = np.tile(funcs, n)
        df = pd.DataFrame(
            {
                "assembly_id": iso,
                "function": func,
                "brc_fea_id": [f"p{i}" for i in range(n * n_funcs)],
                # 200 variants per function: identical proteins across isolates, as in flu
                "esm2_ready_seq": np.char.add(func, rng.integers(0, 200, n * n_funcs).astype(str)),
            }
        )
        t0 = time.perf_counter()
        pairs = make_pairs(df, 1.0, np.random.default_rng(0))
        times.append(time.perf_counter() - t0)
        print(
            f"  {n:7,} isolates, {n * n_funcs:9,} proteins: {len(pairs):10,} pairs in "
            f"{times[-1]:6.2f} s"
        )
    slope = np.polyfit(np.log(sizes), np.log(times), 1)[0]
    print(f"  slope of log(time) on log(isolates): {slope:.2f} (1 = linear, 2 = quadratic)")


def _run_config(tmp: Path, name: str, raw: Path, model: Path) -> Path:
    cfg_path = tmp / f"{name}.yaml"
    cfg_path.write_text(
        yaml.safe_dump(
            {
                "paths": {"data_dir": str(tmp / name), "raw_protein_file": str(raw)},
                "embeddings": {"model_ckpt": str(model), "flush_every": 256},
                "logging": {"show_progress": False},
            }
        )
    )
    preprocess.run(load_config(str(cfg_path)))
    return cfg_path


def bench_fanout(tmp: Path, isolates: int, gpu_rate: float) -> None:
    import subprocess
    import sys

    from esm2pairs.paths import Layout

    model = make_tiny_esm(tmp / "fanout_model", hidden=64, layers=4)
    raw = tmp / "fanout_raw.csv"
    protein_table(isolates, seed=3).to_csv(raw, index=False)
    walls = {}
    for shards in (1, 2):
        cfg = _run_config(tmp, f"fanout{shards}", raw, model)
        cmd = [sys.executable, "-m", "esm2pairs", "embed", "--config", str(cfg), "-q"]
        threads = str(max(1, (os.cpu_count() or 2) // shards))  # the cores shared out
        env = {**os.environ, "OMP_NUM_THREADS": threads}
        t0 = time.perf_counter()
        procs = [
            subprocess.Popen([*cmd, "--shard", f"{k}/{shards}"], env=env, stdout=subprocess.PIPE)
            for k in range(shards)
        ]
        assert all(p.wait() == 0 for p in procs)
        t_merge = time.perf_counter()
        subprocess.run([*cmd, "--merge"], check=True, capture_output=True)
        walls[shards] = (time.perf_counter() - t0, time.perf_counter() - t_merge)
        n_rows = len(pd.read_parquet(Layout.from_config(load_config(str(cfg))).cache_index))
    (w1, m1), (w2, m2) = walls[1], walls[2]
    print(f"  {n_rows:,} proteins, tiny model: 1 shard {w1:.1f} s (merge {m1:.1f} s), ")
    print(f"  2 shards at once {w2:.1f} s (merge {m2:.1f} s): {w1 / w2:.2f}x")

    from transformers import EsmConfig, EsmModel

    big = tmp / "esm2_650M_shape"  # facebook/esm2_t33_650M_UR50D's shape, random weights
    cfg650 = EsmConfig(
        vocab_size=33, hidden_size=1280, num_hidden_layers=33, num_attention_heads=20,
        intermediate_size=5120, max_position_embeddings=1026, pad_token_id=1,
        mask_token_id=32, position_embedding_type="rotary", token_dropout=True,
        emb_layer_norm_before=False,
    )  # fmt: skip
    EsmModel(cfg650, add_pooling_layer=False).save_pretrained(str(big))
    for f in model.iterdir():
        if f.name.startswith(("vocab", "tokenizer", "special")):
            (big / f.name).write_bytes(f.read_bytes())
    emb = Embedder(big, "mean", "last", 1022, "cpu")
    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(AMINO, 566)) for _ in range(4)]  # HA's length
    emb.embed(seqs[:1])
    t0 = time.perf_counter()
    emb.embed(seqs)
    cpu_rate = len(seqs) / (time.perf_counter() - t0)
    print(f"  650M architecture on this CPU (2 cores), 566-residue proteins: {cpu_rate:.2f} seq/s")
    merge_rate = n_rows / max(m2, 1e-9)
    print(f"  merge: {merge_rate:,.0f} rows/s here (tiny rows; it copies the store in slices)")
    print(f"  1M distinct proteins at {gpu_rate:g} seq/s per GPU (given, not measured here):")
    for n in (1, 8, 32, 64):
        hours = 1e6 / (n * gpu_rate) / 3600
        print(f"    {n:3d} GPUs: {hours:6.2f} h of embedding + the merge")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sequences", type=int, default=400)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--isolates", type=int, default=200)
    p.add_argument("--rows", type=int, default=100_000)  # proteins in the cache
    p.add_argument("--dim", type=int, default=1280)
    p.add_argument("--pairs", type=int, default=1_000_000)
    p.add_argument("--isolates-max", type=int, default=64_000)
    p.add_argument("--fanout-isolates", type=int, default=400)
    p.add_argument(
        "--gpu-rate",
        type=float,
        default=40.0,
        help="sequences/s of one GPU on the 650M model, for the estimate: put a shard's "
        "measured sequences_per_s here",
    )
    args = p.parse_args()
    set_progress(False)
    with tempfile.TemporaryDirectory() as tmp:
        print("1. embedding order (tiny model, CPU)")
        bench_batching(Path(tmp), args.sequences, args.batch_size)
        print("2. cache re-run")
        bench_rerun(Path(tmp), args.isolates)
        print(
            f"3. classifier loader ({args.rows:,} rows x {args.dim} fp16, {args.pairs:,} pairs, "
            "batch 256)"
        )
        bench_loader(Path(tmp), args.rows, args.dim, args.pairs, 256)
        bench_loader_s3(Path(tmp), 10_000, args.dim, args.pairs, 256)
        bench_loader_staged(Path(tmp), args.rows, args.dim, args.pairs, 256)
        print("4. pair building, 10 functions (45 function pairs per isolate), ratio 1")
        sizes = [2000 * 2**k for k in range(6) if 2000 * 2**k <= args.isolates_max]
        bench_pair_building(sizes, 10)
        print("5. embedding fanned out (tiny model, CPU processes)")
        bench_fanout(Path(tmp), args.fanout_isolates, args.gpu_rate)


if __name__ == "__main__":
    main()
