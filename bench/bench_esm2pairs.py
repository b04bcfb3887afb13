"""ESM-2 pipeline benchmarks, each a ratio of two measurements taken side by side here.

1. Length-bucketed batching vs the table's own order: sequences/s of the embedder over the
   same sequences (lengths 30-1000, as protein tables mix them), same batch size, a small
   random ESM-2-shaped model (no weights can be downloaded here).
2. A re-run's cache hit rate and model calls (must be 100% and 0) and its time against the
   first run's.
3. The classifier's loader (pairs -> distinct cache rows -> batches, read through h5py) in
   pairs/s against a raw in-memory gather from the whole `emb` array read into memory.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from esm2pairs.config import load_config
from esm2pairs.data.cache import CacheMeta, MasterCache
from esm2pairs.data.pair_loader import PairBatches, loader
from esm2pairs.demo import AMINO, make_tiny_esm, protein_table
from esm2pairs.embedder import Embedder, length_batches
from esm2pairs.steps import embed, preprocess
from pipekit.progress import set_progress


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


def bench_loader(tmp: Path, rows: int, dim: int, pairs: int, batch: int) -> None:
    cache = MasterCache(
        str(tmp / "cache"), "master_esm2_embeddings.h5", "master_esm2_embeddings.parquet"
    )
    meta = CacheMeta("bench", "sig", "mean", "last", "fp16", 1022, dim)
    rng = np.random.default_rng(0)
    for start in range(0, rows, 20_000):
        n = min(20_000, rows - start)
        cache.write_part(
            [f"k{start + i}" for i in range(n)], rng.standard_normal((n, dim)).astype(np.float16)
        )
    cache.merge(meta)
    ra, rb = rng.integers(0, rows, pairs), rng.integers(0, rows, pairs)
    labels = rng.integers(0, 2, pairs)
    batches = PairBatches(cache.h5, ra, rb, labels, batch, shuffle=True)
    t0 = time.perf_counter()
    n = sum(len(y) for _, _, y in loader(batches, 0))
    loader_speed = n / (time.perf_counter() - t0)
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sequences", type=int, default=400)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--isolates", type=int, default=200)
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=1280)
    p.add_argument("--pairs", type=int, default=50_000)
    args = p.parse_args()
    set_progress(False)
    with tempfile.TemporaryDirectory() as tmp:
        print("1. embedding order (tiny model, CPU)")
        bench_batching(Path(tmp), args.sequences, args.batch_size)
        print("2. cache re-run")
        bench_rerun(Path(tmp), args.isolates)
        print(f"3. classifier loader ({args.rows:,} rows x {args.dim} fp16, batch 256)")
        bench_loader(Path(tmp), args.rows, args.dim, args.pairs, 256)


if __name__ == "__main__":
    main()
