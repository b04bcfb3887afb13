"""Preprocess at full mdCATH scale against its I/O floor, measured side by side in one run.

The set has mdCATH's shape in the seed's format: 5,400 domains, about 736k residues, one CSV
row per residue per temperature (about 3.68M rows). The voxel file has the real key
structure (domain/chain/residue), every residue labelled with its residue name, but every
residue key is a hard link to one dataset, so it builds in seconds on little disk; preprocess
never reads a grid, so it does the work it does on the real file.

The floor is what no preprocess can avoid: reading the CSV (pyarrow) and listing every key of
the voxel file (h5py), in a process of its own. Both run locally and with the voxel file and
CSV in object storage (moto's S3 server in another process on loopback; there the floor lists
the keys through the same fsspec file preprocess uses). Prints each wall time, the ratio
(target <= 3x, goal 2x) and preprocess's peak RSS.
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
AMINO = ("ALA", "GLY", "SER", "LEU", "LYS", "GLU", "ASP", "VAL", "ILE", "THR")


def build(root: Path, n_domains: int, n_residues: int, seed: int = 0) -> Path:
    """voxels.hdf5, rmsf.csv, split files and config.yaml under `root`."""
    rng = np.random.default_rng(seed)
    mean_len = n_residues / n_domains
    lengths = np.clip(rng.normal(mean_len, mean_len / 3, n_domains).astype(int), 30, None)
    domains = [f"{i % 9 + 1}d{i:05d}" for i in range(n_domains)]
    first: dict[str, h5py.Dataset] = {}  # residue name -> the one grid stored for it
    t0 = time.perf_counter()
    seqs = []
    with h5py.File(root / "voxels.hdf5", "w") as f:
        for d, n in zip(domains, lengths, strict=True):
            chain = f.create_group(d).create_group("A")
            seq = rng.choice(len(AMINO), n)
            seqs.append(seq)
            for r, k in enumerate(seq, start=1):
                name = AMINO[k]
                if name in first:
                    chain[str(r)] = first[name]  # hard link: a real key, no new data
                else:
                    ds = chain.create_dataset(str(r), data=np.zeros((21, 21, 21, 5), bool))
                    ds.attrs["label"] = name
                    first[name] = ds
    n_temp = len(TEMPS)
    dom = np.repeat(domains, lengths * n_temp)
    resid = np.concatenate([np.repeat(np.arange(1, n + 1), n_temp) for n in lengths])
    resname = np.repeat(np.asarray(AMINO)[np.concatenate(seqs)], n_temp)
    df = pd.DataFrame(
        {
            "domain_id": dom,
            "resid": resid,
            "resname": resname,
            "temperature_feature": np.tile(TEMPS, int(lengths.sum())),
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
    print(
        f"built {len(df):,} CSV rows, {n_domains:,} domains, {int(lengths.sum()):,} residue keys "
        f"in {time.perf_counter() - t0:.1f} s"
    )
    return config(root, root, "local")


def config(root: Path, base: Path | str, name: str) -> Path:
    cfg = {
        "input": {
            "voxel_file": f"{base}/voxels.hdf5",
            "aggregated_rmsf_file": f"{base}/rmsf.csv",
            "train_split_file": f"{base}/train.txt",
            "val_split_file": f"{base}/val.txt",
            "test_split_file": f"{base}/test.txt",
        },
        "data": {"processed_dir": str(root / f"processed-{name}")},
        "output": {"base_dir": str(root / "outputs")},
        "logging": {"show_progress": False, "level": "WARNING"},
    }
    path = root / f"config-{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


PREPROCESS = """
import resource, sys, time
from voxelflex.config import load_config
from voxelflex.steps import preprocess
t0 = time.perf_counter()
res = preprocess.run(load_config(sys.argv[1]))
dt = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(res.n_samples, f"{dt:.3f}", f"{peak:.0f}", res.labels_read)
"""


def io_floor(voxels: str, csv: str) -> float:
    """Seconds of what no preprocess avoids: the CSV read (pyarrow), every voxel key listed
    (h5py, through the same file object preprocess opens: a local path, or fsspec)."""
    import pyarrow.csv

    from pipekit.uri import is_local, local_path, open_scattered, open_uri

    t0 = time.perf_counter()
    with open_uri(csv, "rb") as fh:
        pyarrow.csv.read_csv(fh)
    fh = None if is_local(voxels) else open_scattered(voxels)
    with h5py.File(local_path(voxels) if fh is None else fh, "r") as f:
        for d in f.values():
            for c in d.values():
                list(c.keys())
    if fh is not None:
        fh.close()
    return time.perf_counter() - t0


FLOOR = f"""
import sys
sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})
from bench_preprocess import io_floor
print(f"{{io_floor(sys.argv[1], sys.argv[2]):.3f}}")
"""


def _child(code: str, *args: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=False
    )
    if out.returncode:
        raise SystemExit(out.stderr[-3000:])
    return out.stdout.split()


def measure(cfg: Path, repeats: int) -> tuple[float, float, int, float, int]:
    """(preprocess s, floor s, samples, peak MB, label reads), each time the best of
    `repeats`, the two alternating so the machine's state weighs on both alike."""
    inputs = yaml.safe_load(cfg.read_text())["input"]
    best_pre = best_floor = float("inf")
    for _ in range(repeats):
        (floor_s,) = _child(FLOOR, inputs["voxel_file"], inputs["aggregated_rmsf_file"])
        n, pre_s, peak, reads = _child(PREPROCESS, str(cfg))
        best_floor, best_pre = min(best_floor, float(floor_s)), min(best_pre, float(pre_s))
    return best_pre, best_floor, int(n), float(peak), int(reads)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--domains", type=int, default=5400)
    ap.add_argument("--residues", type=int, default=736_000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--no-s3", action="store_true", help="local files only")
    args = ap.parse_args()
    import s3_loopback  # beside this script (the suite imports the module as bench.*)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cfg = build(root, args.domains, args.residues)
        runs = {"local": cfg}
        server = None if args.no_s3 else s3_loopback.start("bench")
        if server is not None:
            import s3fs

            fs = s3fs.S3FileSystem()
            for name in ("voxels.hdf5", "rmsf.csv", "train.txt", "val.txt", "test.txt"):
                fs.put_file(str(root / name), f"bench/{name}")
            runs["s3 (loopback)"] = config(root, "s3://bench", "s3")
        csv_mb = (root / "rmsf.csv").stat().st_size / 2**20
        h5_mb = (root / "voxels.hdf5").stat().st_size / 2**20
        print(f"inputs: CSV {csv_mb:,.0f} MB, voxel file {h5_mb:,.0f} MB (keys and labels)")
        for where, path in runs.items():
            pre, floor, n, peak, reads = measure(path, args.repeats)
            ratio = pre / floor
            verdict = "met" if ratio <= 3 else "MISSED"
            print(
                f"{where}: preprocess {pre:.2f} s ({n:,} samples, {reads:,} voxel labels read, "
                f"peak RSS {peak:,.0f} MB), I/O floor {floor:.2f} s: {ratio:.2f}x the floor "
                f"(target <= 3x: {verdict}; goal 2x)"
            )
        if server is not None:
            server.terminate()


if __name__ == "__main__":
    main()
