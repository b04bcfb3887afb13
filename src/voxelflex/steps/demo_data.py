"""demo-data: the synthetic demo dataset, its structures voxelized by the voxelize step (the
path every user structure takes); `voxelflex.data.demo` writes everything else."""

from __future__ import annotations

from pathlib import Path

from voxelflex.data.demo import DemoDataset, write_demo
from voxelflex.steps import voxelize


def make_demo_dataset(
    out: str | Path,
    n_domains: int = 24,
    seed: int = 0,
    min_residues: int = 30,
    max_residues: int = 300,
) -> DemoDataset:
    """structures/, voxels.hdf5, aggregated_rmsf.csv, split files and config.yaml in `out`."""
    return write_demo(out, voxelize.run, n_domains, seed, min_residues, max_residues)
