"""Preprocess at full mdCATH scale: 3.3M-row RMSF CSV, 5,400 domain keys (~660k residues).

The voxel file has the real key structure (domain/chain/residue) but every residue key is a
hard link to one dataset, so building it takes seconds and little disk; preprocess lists keys
only, so it does the same work it does on the real file. Prints wall time and peak RSS of the
preprocess process (target: under 60 s on 2 cores).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import yaml

TEMPS = (320.0, 348.0, 379.0, 413.0, 450.0)


def build(root: Path, n_domains: int, rows_target: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    mean_len = rows_target / len(TEMPS) / n_domains
    lengths = np.clip(rng.normal(mean_len, mean_len / 3, n_domains).astype(int), 30, None)
    domains = [f"{i % 9 + 1}d{i:05d}" for i in range(n_domains)]
    t0 = time.perf_counter()
    with h5py.File(root / "voxels.hdf5", "w") as f:
        shared = f.create_dataset("_shared", data=np.zeros((21, 21, 21, 5), bool))
        for d, n in zip(domains, lengths, strict=True):
            chain = f.create_group(d).create_group("A")
            for r in range(1, n + 1):
                chain[str(r)] = shared  # hard link: a real key, no new data
    dom = np.repeat(domains, lengths * len(TEMPS))
    resid = np.concatenate([np.repeat(np.arange(1, n + 1), len(TEMPS)) for n in lengths])
    temp = np.tile(TEMPS, int(lengths.sum()))
    df = pd.DataFrame(
        {
            "domain_id": dom,
            "resid": resid,
            "resname": "ALA",
            "temperature_feature": temp,
            "target_rmsf": rng.random(len(dom)) * 0.5,
            "relative_accessibility": rng.random(len(dom)),
            "dssp": "H",
        }
    )
    df.to_csv(root / "rmsf.csv", index=False, float_format="%.5g")
    order = rng.permutation(domains)
    n_tr, n_va = int(0.8 * n_domains), int(0.1 * n_domains)
    for name, part in (
        ("train", order[:n_tr]),
        ("val", order[n_tr : n_tr + n_va]),
        ("test", order[n_tr + n_va :]),
    ):
        (root / f"{name}.txt").write_text("\n".join(part) + "\n")
    cfg = {
        "input": {
            "voxel_file": "voxels.hdf5",
            "aggregated_rmsf_file": "rmsf.csv",
            "train_split_file": "train.txt",
            "val_split_file": "val.txt",
            "test_split_file": "test.txt",
        },
        "logging": {"show_progress": False},
    }
    (root / "config.yaml").write_text(yaml.safe_dump(cfg))
    print(
        f"built {len(df):,} CSV rows, {n_domains:,} domains, {int(lengths.sum()):,} residue keys "
        f"in {time.perf_counter() - t0:.1f} s"
    )
    return root / "config.yaml"


CHILD = """
import resource, sys, time
from voxelflex.config import load_config
from voxelflex.steps import preprocess
t0 = time.perf_counter()
res = preprocess.run(load_config(sys.argv[1]))
dt = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"{res.n_samples} {dt:.2f} {peak:.0f}")
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--domains", type=int, default=5400)
    ap.add_argument("--rows", type=int, default=3_300_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = build(Path(tmp), args.domains, args.rows)
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(cfg)], capture_output=True, text=True, check=True
        ).stdout.split()
        n, seconds, peak_mb = int(out[0]), float(out[1]), float(out[2])
        csv_mb = (Path(tmp) / "rmsf.csv").stat().st_size / 2**20
    print(
        f"preprocess: {n:,} samples in {seconds:.1f} s ({n / seconds:,.0f} samples/s), "
        f"peak RSS {peak_mb:,.0f} MB for a {csv_mb:,.0f} MB CSV "
        f"(RSS/CSV {peak_mb / csv_mb:.1f}x); target < 60 s: {'met' if seconds < 60 else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
