"""Loader throughput vs a raw read of the same bytes, measured side by side in one run.

Raw: every residue dataset of the training split read and decompressed with h5py in a plain
loop (what any reader of the per-residue layout must do at least). Loader: the VoxelStream
over the same residues, with its shuffling, batching and sample bookkeeping, 0 and 2 workers.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import h5py

from pipekit.progress import set_progress
from training_data import training_index
from voxelflex.data.loader import StreamSettings, VoxelStream, make_loader
from voxelflex.data.samples import SampleIndex
from voxelflex.data.sources import open_voxel_source


def raw_read(voxel_file: str, index: SampleIndex) -> float:
    t0 = time.perf_counter()
    with h5py.File(voxel_file, "r") as f:
        for d in range(index.n_domains):
            group = f[str(index.domain_ids[d])]
            for r in range(index.domain_res[d], index.domain_res[d + 1]):
                group[str(index.res_chain[r])][str(index.res_key[r])][()]
    return time.perf_counter() - t0


def loader_read(cfg, index: SampleIndex, workers: int) -> tuple[float, int]:
    settings = StreamSettings(256, 4, True, 2048, 0)
    stream = VoxelStream(open_voxel_source(cfg.input.voxel_file), index, settings)
    t0 = time.perf_counter()
    n = sum(len(b["row"]) for b in make_loader(stream, workers))
    return time.perf_counter() - t0, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--domains", type=int, default=16)
    args = ap.parse_args()
    set_progress(False)
    with tempfile.TemporaryDirectory() as tmp:
        _, cfg, index = training_index(tmp, args.domains)
        raw_read(cfg.input.voxel_file, index)  # warm the page cache for both
        raw_s = raw_read(cfg.input.voxel_file, index)
        res = index.n_residues
        print(f"{res:,} residues, {index.n_samples:,} samples (training split)")
        print(f"raw per-residue h5py read: {res / raw_s:,.0f} residues/s")
        for workers in (0, 2):
            secs, n = loader_read(cfg, index, workers)
            assert n == index.n_samples
            print(
                f"loader, {workers} workers: {res / secs:,.0f} residues/s, "
                f"{n / secs:,.0f} samples/s, {raw_s / secs:.2f}x the raw read"
            )


if __name__ == "__main__":
    main()
