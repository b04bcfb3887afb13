"""A small synthetic dataset in exactly the input contract, for demos and tests.

Geometry (aposteriori-like frame): 21 voxels per side over a 12 Å edge (0.571 Å/voxel), the
residue's CA at the centre voxel, N on +Y, C in the XY plane, O beside C, a virtual CB out of
the plane. Around it, neighbouring atoms (C, N, O, CA, CB channels) are placed uniformly in a
6 Å ball outside 2.8 Å; their number follows a smooth "burial" profile along the chain, with
exposed termini.

The RMSF rule (nm), documented so users know what a model can learn:
    d     = min(neighbour voxels occupied / 140, 1)          # local packing, read from voxels
    pO    = oxygen voxels among neighbours / neighbour voxels
    base  = 0.05 + 0.30 * exp(-2.5 * d) + 0.05 * pO
    s     = (T - 320) / 130                                   # 0 at 320 K, 1 at 450 K
    rmsf  = base * (1 + s * (0.6 + 1.2 * (1 - d))) * exp(0.04 * noise),  noise ~ N(0, 1)
so RMSF falls with packing and rises with temperature, faster for exposed residues.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import yaml

from voxelflex.data.voxels import CHANNELS, GRID

TEMPERATURES = (320.0, 348.0, 379.0, 413.0, 450.0)
EDGE_A = 12.0
VOXEL_A = EDGE_A / (GRID - 1)
RESNAMES = [
    "ALA",
    "ARG",
    "ASN",
    "ASP",
    "CYS",
    "GLN",
    "GLU",
    "GLY",
    "HIS",
    "ILE",
    "LEU",
    "LYS",
    "MET",
    "PHE",
    "PRO",
    "SER",
    "THR",
    "TRP",
    "TYR",
    "VAL",
]
# Backbone of the centre residue in its frame (Å): CA at origin, N on +Y, C in the XY plane.
BACKBONE = {
    "CA": (0.0, 0.0, 0.0),
    "N": (0.0, 1.46, 0.0),
    "C": (1.42, -0.55, 0.0),
    "O": (2.38, 0.12, 0.35),
    "CB": (-0.52, -0.78, 1.20),
}
NEIGHBOUR_CHANNEL_P = (0.50, 0.16, 0.18, 0.09, 0.07)  # C, N, O, CA, CB


@dataclass(frozen=True)
class DemoDataset:
    root: Path
    config: Path
    voxel_file: Path
    rmsf_csv: Path
    n_domains: int
    n_residues: int


def _to_voxel(coords: np.ndarray) -> np.ndarray:
    idx = np.rint(coords / VOXEL_A).astype(int) + GRID // 2
    return idx[np.all((idx >= 0) & (idx < GRID), axis=1)]


def _burial_profile(rng: np.random.Generator, n: int) -> np.ndarray:
    noise = rng.normal(size=n + 16)
    kernel = np.exp(-0.5 * (np.arange(-8, 9) / 3.0) ** 2)
    smooth = np.convolve(noise, kernel / kernel.sum(), mode="valid")[:n]
    burial = 1.0 / (1.0 + np.exp(-3.0 * smooth / smooth.std()))
    ends = np.minimum(np.arange(n), np.arange(n)[::-1])
    return burial * (1.0 - np.exp(-ends / 4.0))


def _residue_grid(rng: np.random.Generator, burial: float) -> np.ndarray:
    grid = np.zeros((GRID, GRID, GRID, len(CHANNELS)), dtype=bool)  # aposteriori: channel-last
    for c, name in enumerate(CHANNELS):
        x, y, z = _to_voxel(np.array([BACKBONE[name]]))[0]
        grid[x, y, z, c] = True
    n_atoms = int(rng.poisson(15 + 150 * burial))
    direction = rng.normal(size=(n_atoms, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    radius = rng.uniform(2.8, 6.0, size=(n_atoms, 1))
    channel = rng.choice(len(CHANNELS), size=n_atoms, p=NEIGHBOUR_CHANNEL_P)
    for c in range(len(CHANNELS)):
        idx = _to_voxel((direction * radius)[channel == c])
        grid[idx[:, 0], idx[:, 1], idx[:, 2], c] = True
    return grid


def rmsf_rule(grid: np.ndarray, temperature: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """The documented rule above, from a channel-last grid and temperatures in K."""
    neighbours = grid.sum() - len(CHANNELS)
    d = min(neighbours / 140.0, 1.0)
    p_o = (grid[..., CHANNELS.index("O")].sum() - 1) / max(neighbours, 1)
    base = 0.05 + 0.30 * np.exp(-2.5 * d) + 0.05 * p_o
    s = (temperature - 320.0) / 130.0
    return base * (1.0 + s * (0.6 + 1.2 * (1.0 - d))) * np.exp(0.04 * noise)


def _domain_id(rng: np.random.Generator, i: int) -> str:
    letters = "".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz0123456789"), size=3))
    return f"{1 + i % 9}{letters}A{i % 100:02d}"


def _dssp(rng: np.random.Generator, n: int) -> np.ndarray:
    out = np.empty(n, dtype=object)
    i = 0
    while i < n:
        cls = rng.choice(["H", "E", "C"], p=[0.4, 0.25, 0.35])
        length = int(rng.integers(3, 12))
        out[i : i + length] = cls
        i += length
    return out


def make_demo_dataset(
    out: str | Path,
    n_domains: int = 24,
    seed: int = 0,
    min_residues: int = 30,
    max_residues: int = 300,
) -> DemoDataset:
    """Write voxels.hdf5, aggregated_rmsf.csv, split files and config.yaml under `out`."""
    if n_domains < 3:
        raise ValueError("the demo needs at least 3 domains (one per split)")
    if not 1 <= min_residues <= max_residues:
        raise ValueError("need 1 <= min_residues <= max_residues")
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    domains = []
    while len(domains) < n_domains:
        d = _domain_id(rng, len(domains))
        if d not in domains:
            domains.append(d)
    rows = []
    voxel_file = root / "voxels.hdf5"
    with h5py.File(voxel_file, "w") as f:
        f.attrs["frame_edge_length"] = EDGE_A
        f.attrs["voxels_per_side"] = GRID
        f.attrs["atom_encoder"] = list(CHANNELS)
        f.attrs["encode_cb"] = True
        for i, domain in enumerate(domains):
            drng = np.random.default_rng([seed, i])
            n = int(drng.integers(min_residues, max_residues + 1))
            start = int(drng.integers(1, 60))
            burial = _burial_profile(drng, n)
            names = drng.choice(RESNAMES, size=n)
            dssp = _dssp(drng, n)
            chain = f.create_group(domain).create_group("A")
            for j in range(n):
                grid = _residue_grid(drng, float(burial[j]))
                chain.create_dataset(str(start + j), data=grid, compression="gzip")
                temps = np.array(TEMPERATURES)
                rmsf = rmsf_rule(grid, temps, drng.normal(size=len(temps)))
                rsa = float(np.clip(1.0 - burial[j] + drng.normal(0, 0.05), 0, 1))
                for t, r in zip(temps, rmsf, strict=True):
                    rows.append((domain, start + j, names[j], t, r, rsa, dssp[j]))
    csv = root / "aggregated_rmsf.csv"
    pd.DataFrame(
        rows,
        columns=[
            "domain_id",
            "resid",
            "resname",
            "temperature_feature",
            "target_rmsf",
            "relative_accessibility",
            "dssp",
        ],
    ).to_csv(csv, index=False, float_format="%.6g")
    order = rng.permutation(n_domains)
    n_val = n_test = max(1, round(0.15 * n_domains))
    parts = {
        "test": order[:n_test],
        "val": order[n_test : n_test + n_val],
        "train": order[n_test + n_val :],
    }
    for name, idx in parts.items():
        (root / f"{name}_domains.txt").write_text("".join(f"{domains[k]}\n" for k in idx))
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump(_demo_config(), sort_keys=False))
    return DemoDataset(root, config, voxel_file, csv, n_domains, len(rows) // len(TEMPERATURES))


def _demo_config() -> dict:
    # Small model and few epochs: the demo runs in minutes on two CPU cores.
    return {
        "input": {
            "voxel_file": "voxels.hdf5",
            "aggregated_rmsf_file": "aggregated_rmsf.csv",
            "train_split_file": "train_domains.txt",
            "val_split_file": "val_domains.txt",
            "test_split_file": "test_domains.txt",
        },
        "data": {"processed_dir": "processed"},
        "output": {"base_dir": "outputs", "run_name": "demo"},
        "model": {"architecture": "multipath_rmsf_net", "base_filters": 8, "dropout_rate": 0.1},
        "training": {
            "batch_size": 64,
            "learning_rate": 0.003,
            "num_epochs": 4,
            "chunk_size": 4,
            "num_workers": 1,
            "checkpoint_every": 2,
        },
    }
