"""Belka benchmarks, ratios of measurements taken side by side here.

1. Featurizing: tokenize + ECFP (what make_dataset does per molecule) against RDKit's
   parse + Morgan fingerprint alone, molecules/s on one core.
2. The training stream (shuffled, batched, as train_model reads it) against a raw read of
   the same store (each shard decompressed, nothing else), molecules/s.
3. Bytes per molecule: the feature store against the parquet it is made from, and against
   the BELKA inputs (train + test parquet, one row per molecule and protein).
4. generate_parquet's peak memory against its input rows (a subprocess per size; larger
   inputs are the demo's rows repeated with distinct SMILES strings).
6. train_model's peak memory at the defaults (8 loader workers, 512 MiB shuffle buffer
   each): a store of --train-rss-molecules made of the demo's featurized shards repeated,
   trained for a few batches; the whole process tree's proportional set size (PSS: shared
   pages counted once over the processes that share them) sampled from /proc.
5. make_dataset fanned out: the shards featurized by 1 task against 2 tasks at once (each a
   process on one core, as the pipeline's make_dataset_part tasks), then gathered; from the
   measured rates, the wall time of BELKA's 98M molecules on N tasks.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from rdkit import Chem
from rdkit.Chem import rdFingerprintGenerator

from belka.config import load_config
from belka.data.dataset import StoreStream, make_loader
from belka.data.store import Store
from belka.demo import make_demo
from belka.features import Featurizer
from belka.steps import create_val_dataset, generate_parquet, get_vocab, make_dataset
from belka.tokenizer import Vocab
from pipekit.progress import set_progress


def bench_featurize(work: Path, n: int) -> None:
    smiles = pd.read_parquet(work / "belka.parquet")["molecule_smiles"].tolist()[:n]
    f = Featurizer(Vocab.load(str(work / "vocab.txt")), 128, 2, 1024)
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=1024)

    def rdkit_only() -> float:
        t0 = time.perf_counter()
        for s in smiles:
            gen.GetFingerprintAsNumPy(Chem.MolFromSmiles(s))
        return len(smiles) / (time.perf_counter() - t0)

    def featurize() -> float:
        t0 = time.perf_counter()
        for s in smiles:
            f(s)
        return len(smiles) / (time.perf_counter() - t0)

    # interleaved, best of three each: neither side gets the warm caches alone
    runs = [(rdkit_only(), featurize()) for _ in range(3)]
    rdkit_rate, ours = max(r[0] for r in runs), max(r[1] for r in runs)
    print(f"  RDKit parse + Morgan alone: {rdkit_rate:,.0f} molecules/s per core")
    print(f"  tokenize + ECFP (make_dataset): {ours:,.0f} molecules/s per core")
    print(f"  ours / RDKit alone: {ours / rdkit_rate:.2f}x")


def bench_loader(work: Path, batch: int, repeat: int) -> None:
    base = Store.open(str(work / "belka.tfr"))
    # the store's shards listed `repeat` times: a larger store without featurizing more
    store = Store(base.uri, base.manifest | {"shards": base.shards * repeat})
    t0 = time.perf_counter()
    n = sum(len(store.read(i)["mol_id"]) for i in range(len(store.shards)))
    raw = n / (time.perf_counter() - t0)
    print(f"  raw read of the store ({n:,} molecules): {raw:,.0f} molecules/s")
    for workers in (0, 2):
        stream = StoreStream(store, (0, 1, 2), batch, shuffle=True, seed=0, buffer_size=20_000)
        t0 = time.perf_counter()
        seen = sum(len(b["mol_id"]) for b in make_loader(stream, workers))
        rate = seen / (time.perf_counter() - t0)
        print(
            f"  training stream, {workers} workers: {rate:,.0f} molecules/s "
            f"({rate / raw:.2f}x the raw read)"
        )


def bench_bytes(root: Path, work: Path) -> None:
    store = Store.open(str(work / "belka.tfr"))
    store_bytes = sum(p.stat().st_size for p in (work / "belka.tfr").glob("shard-*.npz"))
    mols = store.rows
    parquet = (work / "belka.parquet").stat().st_size
    inputs = sum((root / "raw" / f).stat().st_size for f in ("train.parquet", "test.parquet"))
    print(f"  store: {store_bytes / mols:,.0f} bytes/molecule (tokens, 1024 ECFP bits, labels)")
    print(
        f"  belka.parquet: {parquet / mols:,.0f} bytes/molecule "
        f"(store / parquet {store_bytes / parquet:.2f}x)"
    )
    print(
        f"  BELKA inputs (train + test parquet): {inputs / mols:,.0f} bytes/molecule "
        f"(store / inputs {store_bytes / inputs:.2f}x)"
    )


# VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so a child would report the
# parent's (this process holds the big input table when it starts the child)
RSS_PROBE = """
import json, sys
from belka.config import load_config
from belka.steps import generate_parquet
from pipekit.progress import set_progress
set_progress(False)
res = generate_parquet.run(load_config(sys.argv[1]))
hwm = [x for x in open("/proc/self/status") if x.startswith("VmHWM")][0].split()[1]
print(json.dumps({"rss_mb": int(hwm) / 1024,
                  "molecules": res.molecules, "buckets": res.buckets}))
"""


def bench_memory(root: Path, tmp: Path, sizes: list[int], bucket_rows: int) -> None:
    train = pd.read_parquet(root / "raw" / "train.parquet")
    for rows in sizes:
        folder = tmp / f"rss_{rows}"
        (folder / "raw").mkdir(parents=True)
        reps = -(-rows // len(train))
        big = pd.concat([train] * reps, ignore_index=True).iloc[:rows].copy()
        copy = np.repeat(np.arange(reps), len(train))[:rows]
        big["molecule_smiles"] = big["molecule_smiles"] + "." + pd.Series(copy).astype(str)
        big["id"] = np.arange(rows)
        big.to_parquet(folder / "raw" / "train.parquet", index=False, row_group_size=100_000)
        del big
        (folder / "raw" / "test.parquet").write_bytes((root / "raw" / "test.parquet").read_bytes())
        cfg = {
            "data": {
                "root": str(folder / "raw"),
                "working": str(folder / "work"),
                "extra_file": None,
            },
            "features": {"rows_per_bucket": bucket_rows},
        }
        (folder / "config.yaml").write_text(json.dumps(cfg))
        t0 = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", RSS_PROBE, str(folder / "config.yaml")],
            capture_output=True,
            text=True,
            check=True,
        )
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"  {rows:>10,} rows ({r['buckets']} buckets): peak RSS {r['rss_mb']:,.0f} MB, "
            f"{time.perf_counter() - t0:.1f} s"
        )


PART_PROBE = """
import json, sys, time
from dataclasses import replace
from belka.config import load_config
from belka.paths import Layout
from belka.steps import make_dataset
from pipekit.progress import set_progress
set_progress(False)
cfg = load_config(sys.argv[1], ["system.n_workers=0"])
t0 = time.perf_counter()
layout = replace(Layout.of(cfg), store=sys.argv[4])
make_dataset.run_part(cfg, layout, int(sys.argv[2]), int(sys.argv[3]))
print(json.dumps({"s": time.perf_counter() - t0}))
"""
BELKA_MOLECULES = 98_000_000


def bench_fanout(config: Path, tmp: Path, tasks_list: tuple[int, ...] = (1, 2)) -> None:
    """Featurize the store with each task count (every task its own process), then gather;
    the gathered stores must be identical."""
    from dataclasses import replace

    from belka.paths import Layout

    cfg = load_config(str(config), ["system.n_workers=0"])
    base = Layout.of(cfg)
    rows = Store.open(base.store).rows
    stores = {}
    for tasks in tasks_list:
        ranges = make_dataset.plan(cfg, base, tasks)
        parts = [str(tmp / f"fan{tasks}" / f"part{k}" / "belka.tfr") for k in range(len(ranges))]
        t0 = time.perf_counter()
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", PART_PROBE, str(config), str(r["first"]), str(r["stop"]), p],
                stdout=subprocess.PIPE,
                text=True,
            )
            for r, p in zip(ranges, parts, strict=True)
        ]
        inner = [json.loads(proc.communicate()[0].strip().splitlines()[-1])["s"] for proc in procs]
        wall = time.perf_counter() - t0
        out = replace(base, store=str(tmp / f"fan{tasks}" / "belka.tfr"), working=str(tmp / "w"))
        t1 = time.perf_counter()
        make_dataset.finish(cfg, out, parts)
        gather = time.perf_counter() - t1
        stores[tasks] = {f.name: f.read_bytes() for f in Path(out.store).iterdir() if f.is_file()}
        size = sum(len(b) for b in stores[tasks].values())
        print(
            f"  {tasks} task(s): featurized {rows:,} molecules in {wall:.1f} s wall "
            f"(slowest task {max(inner):.1f} s after start-up), {rows / wall:,.0f} molecules/s; "
            f"gather {gather:.2f} s ({size / rows:.0f} B/molecule)"
        )
        stores[tasks]["_rate"] = rows / max(inner)  # type: ignore[assignment]
        stores[tasks]["_gather"] = gather / rows  # type: ignore[assignment]
        stores[tasks]["_wall"] = wall  # type: ignore[assignment]
    one, two = stores[tasks_list[0]], stores[tasks_list[-1]]
    same = {k: v for k, v in one.items() if not k.startswith("_")} == {
        k: v for k, v in two.items() if not k.startswith("_")
    }
    print(f"  2 tasks / 1 task, wall: {one['_wall'] / two['_wall']:.2f}x; stores identical: {same}")
    per_task = one["_rate"]
    for n in (1, 16, 64, 256):
        hours = BELKA_MOLECULES / (per_task * n) / 3600
        gather_h = BELKA_MOLECULES * one["_gather"] / 3600
        print(
            f"  98M molecules on {n:>3} one-core tasks: about {hours:,.2f} h featurizing "
            f"+ {gather_h:.2f} h gathering (local disk; object storage slower)"
        )


def _tree(root: int) -> list[int]:
    """`root` and every process descending from it."""
    parent: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent[int(stat.parent.name)] = int(fields[1])
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += [c for c, p in parent.items() if p == pid]
    return out


def _memory_kb(pids: list[int]) -> tuple[int, int]:
    """Summed PSS and RSS (kB) of the processes."""
    pss = rss = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("Pss:"):
                pss += int(line.split()[1])
            elif line.startswith("Rss:"):
                rss += int(line.split()[1])
    return pss, rss


def bench_train_rss(work: Path, tmp: Path, molecules: int) -> None:
    """train_model mlm at the default loader settings on a store of `molecules` rows."""
    from belka.data.store import BUILD, MANIFEST, read_json, write_json, write_shard

    src = Store.open(str(work / "belka.tfr"))
    parts = [src.read(i) for i in range(len(src.shards))]
    arrays = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    arrays["subset"] = np.where(arrays["subset"] == 1, 0, arrays["subset"]).astype(np.int8)
    shard_rows = 100_000
    reps = -(-shard_rows // len(arrays["mol_id"]))
    shard = {k: np.concatenate([v] * reps)[:shard_rows] for k, v in arrays.items()}
    big = tmp / "big" / "belka.tfr"
    n = -(-molecules // shard_rows)
    entries = [write_shard(str(big), i, shard) for i in range(n)]
    write_json(str(big / BUILD), read_json(str(work / "belka.tfr" / BUILD)) or {})
    write_json(
        str(big / MANIFEST),
        dict(src.manifest) | {"shards": entries, "rows": n * shard_rows, "skipped": 0},
    )
    cfg = {
        "data": {"root": str(work), "working": str(tmp / "big"), "vocab": str(work / "vocab.txt")},
        "training": {"epochs": 1, "steps_per_epoch": 40, "validation_steps": 2},
    }
    (tmp / "big" / "config.yaml").write_text(json.dumps(cfg))
    (tmp / "big" / "belka_val.tfr").symlink_to(work / "belka_val.tfr")
    cmd = [sys.executable, "-m", "belka", "--quiet", "--config", str(tmp / "big" / "config.yaml")]
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [*cmd, "--step", "train_model", "--mode", "mlm"], stdout=subprocess.PIPE, text=True
    )
    peak_pss = peak_rss = 0
    while proc.poll() is None:
        pss, rss = _memory_kb(_tree(proc.pid))
        peak_pss, peak_rss = max(peak_pss, pss), max(peak_rss, rss)
        time.sleep(0.5)
    out = proc.stdout.read() if proc.stdout else ""
    gib = 1 << 20
    print(
        f"  store {n * shard_rows:,} molecules, 8 workers x 512 MiB buffers: exit "
        f"{proc.returncode} in {time.perf_counter() - t0:.0f} s; peak PSS "
        f"{peak_pss / gib:.2f} GiB (summed RSS {peak_rss / gib:.2f} GiB) against the train "
        f"pod's 24 GiB limit; the buffers' bound 8 x 2 x 512 MiB = 8 GiB"
    )
    print("  " + out.strip().splitlines()[-1] if out.strip() else "  (no output)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--molecules", type=int, default=8000)
    ap.add_argument("--rss-rows", type=int, nargs="*", default=[300_000, 1_000_000, 3_000_000])
    ap.add_argument("--bucket-rows", type=int, default=250_000)
    ap.add_argument("--fanout-only", action="store_true", help="section 5 alone")
    ap.add_argument("--train-rss-molecules", type=int, default=0, help="section 6 alone")
    args = ap.parse_args()
    set_progress(False)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        demo = make_demo(tmp / "demo", n_train=args.molecules, n_test=1000, n_extra=500)
        cfg = load_config(str(demo.config), ["system.n_workers=0"])
        for step in (generate_parquet, get_vocab, make_dataset, create_val_dataset):
            step.run(cfg)
        work = Path(cfg.data.working)
        if args.train_rss_molecules:
            print("6. train_model's peak memory at the defaults")
            bench_train_rss(work, tmp, args.train_rss_molecules)
            return
        if args.fanout_only:
            print("5. make_dataset fanned out (one core per task)")
            bench_fanout(demo.config, tmp)
            return
        print("1. featurizing")
        bench_featurize(work, 3000)
        print("2. loader")
        bench_loader(work, 2048, 20)  # the plan's training.batch_size
        print("3. size")
        bench_bytes(demo.root, work)
        print("5. make_dataset fanned out (one core per task)")
        bench_fanout(demo.config, tmp)
        if args.rss_rows:
            print(f"4. generate_parquet memory (rows_per_bucket {args.bucket_rows:,})")
            bench_memory(demo.root, tmp, args.rss_rows, args.bucket_rows)


if __name__ == "__main__":
    main()
