"""A small synthetic dataset in exactly the input contract, for demos and tests.

The grids come from the voxelizer, through the same code path as a user's structures: each
demo domain is a generated protein backbone written as a PDB file (`structures/<domain>.pdb`)
and turned into frames by `voxelflex voxelize` (`voxelflex.steps.voxelize.run`). So demo
frames and real frames share one geometry (0.571 A voxels, N at (10, 13, 10), the virtual CB
at (9, 9, 8)) and real occupancy (about 46 occupied voxels per residue; a test compares them
with real structures).

The backbones: a C-alpha trace grown residue by residue inside a sphere of protein density
(about 150 A^3 per residue), in helix (virtual bond angle 91 deg, dihedral 50 deg), strand
(120, -170) and loop segments, never closer than 4.8 A to an earlier C-alpha; N and C are put
at ideal distances (1.458 A, 1.525 A, N-CA-C 111.2 deg) in the plane of the neighbouring
C-alphas, O beside C. A compact chain's termini and loops are exposed, its core packed.

The RMSF rule (nm), stated over what the model sees, the residue's grid:
    n     = occupied voxels - 5          # neighbours: all but the residue's own N CA C O CB
    d     = clip((n - 20) / 40, 0, 1)    # packing: 20 ~ an exposed terminus, 60 ~ a packed core
    pO    = (oxygen voxels - 1) / max(n, 1)
    base  = 0.05 + 0.30 * exp(-2.5 * d) + 0.05 * pO
    s     = (T - 320) / 130              # 0 at 320 K, 1 at 450 K
    rmsf  = base * (1 + s * (0.6 + 1.2 * (1 - d))) * exp(0.04 * noise),  noise ~ N(0, 1)
so RMSF falls with packing and rises with temperature, faster for exposed residues.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import yaml

from pipekit.errors import InputDataError
from voxelflex.data.voxels import CHANNELS, SYNTHETIC_ATTR

TEMPERATURES = (320.0, 348.0, 379.0, 413.0, 450.0)
RESNAMES = [
    "ALA", "ARG", "ASN", "ASP", "CYS", "GLN", "GLU", "GLY", "HIS", "ILE",
    "LEU", "LYS", "MET", "PHE", "PRO", "SER", "THR", "TRP", "TYR", "VAL",
]  # fmt: skip
VOLUME_PER_RESIDUE = 150.0  # A^3: the globule's sphere; proteins pack about 130-150
CA_STEP, MIN_CA_DISTANCE = 3.8, 4.8  # A
# occupied neighbour voxels of an exposed terminus and of a packed core in real frames
EXPOSED_NEIGHBOURS, PACKED_NEIGHBOURS = 20, 60
# (virtual bond angle, dihedral) of the C-alpha trace in degrees, with their spread
SEGMENTS = {"H": ((91.0, 3.0), (50.0, 6.0)), "E": ((120.0, 5.0), (-170.0, 10.0))}
SEGMENT_P = {"H": 0.40, "E": 0.25, "C": 0.35}
SEGMENT_LENGTH = {"H": (6, 16), "E": (4, 9), "C": (2, 7)}


@dataclass(frozen=True)
class DemoDataset:
    root: Path
    config: Path
    voxel_file: Path
    rmsf_csv: Path
    n_domains: int
    n_residues: int


def packing(neighbours: int) -> float:
    """d of the rule: 0 for an exposed residue, 1 for a packed one."""
    span = PACKED_NEIGHBOURS - EXPOSED_NEIGHBOURS
    return float(np.clip((neighbours - EXPOSED_NEIGHBOURS) / span, 0.0, 1.0))


def rmsf_rule(grid: np.ndarray, temperature: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """The documented rule above, from a channel-last grid and temperatures in K."""
    neighbours = max(int(grid.sum()) - len(CHANNELS), 0)
    d = packing(neighbours)
    p_o = max(int(grid[..., CHANNELS.index("O")].sum()) - 1, 0) / max(neighbours, 1)
    base = 0.05 + 0.30 * np.exp(-2.5 * d) + 0.05 * p_o
    s = (temperature - 320.0) / 130.0
    return base * (1.0 + s * (0.6 + 1.2 * (1.0 - d))) * np.exp(0.04 * noise)


def _place(a: np.ndarray, b: np.ndarray, c: np.ndarray, angle: float, dihedral: float):
    """The point d with |cd| = CA_STEP, angle b-c-d and dihedral a-b-c-d in degrees (NeRF)."""
    bc = (c - b) / np.linalg.norm(c - b)
    n = np.cross(b - a, bc)
    n /= np.linalg.norm(n)
    m = np.stack([bc, np.cross(n, bc), n], axis=1)
    th, ph = np.deg2rad(angle), np.deg2rad(dihedral)
    local = CA_STEP * np.array([-np.cos(th), np.sin(th) * np.cos(ph), np.sin(th) * np.sin(ph)])
    return c + m @ local


def _segments(rng: np.random.Generator, n: int) -> np.ndarray:
    kinds = list(SEGMENT_P)
    out: list[str] = []
    while len(out) < n:
        kind = str(rng.choice(kinds, p=list(SEGMENT_P.values())))
        lo, hi = SEGMENT_LENGTH[kind]
        out.extend([kind] * int(rng.integers(lo, hi + 1)))
    return np.array(out[:n])


def ca_trace(rng: np.random.Generator, kinds: np.ndarray) -> np.ndarray:
    """(n, 3) C-alpha positions of a compact chain following the segment kinds."""
    n = len(kinds)
    radius = (3.0 * n * VOLUME_PER_RESIDUE / (4.0 * np.pi)) ** (1.0 / 3.0)
    ca = np.zeros((n, 3))
    ca[1] = [CA_STEP, 0.0, 0.0]
    ca[2] = _place(np.array([0.0, 1.0, 0.0]), ca[0], ca[1], 100.0, 0.0)
    ca[:3] -= ca[:3].mean(axis=0) + rng.uniform(-0.3, 0.3, 3) * radius
    for i in range(3, n):
        for attempt in range(400):
            spec = SEGMENTS.get(str(kinds[i]))
            if spec is not None and attempt < 4:
                (a0, a_sd), (t0, t_sd) = spec
                angle, dihedral = rng.normal(a0, a_sd), rng.normal(t0, t_sd)
            else:
                angle, dihedral = rng.uniform(85.0, 150.0), rng.uniform(-180.0, 180.0)
            p = _place(ca[i - 3], ca[i - 2], ca[i - 1], angle, dihedral)
            grow = 1.0 + attempt / 100.0  # the sphere yields a little where the chain is stuck
            far = np.linalg.norm(ca[: i - 1] - p, axis=1).min() >= MIN_CA_DISTANCE
            if np.linalg.norm(p) <= radius * grow and far:
                break
        ca[i] = p
    return ca


def backbone_from_trace(ca: np.ndarray) -> dict[str, np.ndarray]:
    """N, C, O for each C-alpha: ideal N-CA and CA-C lengths and N-CA-C angle, N toward the
    previous C-alpha and C toward the next, in their plane; O off C, away from CA and N+1."""
    ext = np.concatenate([[2 * ca[0] - ca[1]], ca, [2 * ca[-1] - ca[-2]]])
    to_prev = ext[:-2] - ca
    to_next = ext[2:] - ca
    to_prev /= np.linalg.norm(to_prev, axis=1, keepdims=True)
    to_next /= np.linalg.norm(to_next, axis=1, keepdims=True)
    bis = to_prev + to_next
    straight = np.linalg.norm(bis, axis=1) < 1e-6
    bis[straight] = np.cross(to_next[straight], [0.0, 0.0, 1.0])
    bis /= np.linalg.norm(bis, axis=1, keepdims=True)
    across = to_prev - np.sum(to_prev * bis, axis=1, keepdims=True) * bis
    across /= np.linalg.norm(across, axis=1, keepdims=True)
    half = np.deg2rad(111.2 / 2)
    n_at = ca + 1.458 * (np.cos(half) * bis + np.sin(half) * across)
    c_at = ca + 1.525 * (np.cos(half) * bis - np.sin(half) * across)
    n_next = np.concatenate([n_at[1:], [c_at[-1] + 1.33 * to_next[-1]]])
    away = (c_at - ca) / 1.525 + (c_at - n_next) / np.linalg.norm(c_at - n_next, axis=1)[:, None]
    o_at = c_at + 1.231 * away / np.linalg.norm(away, axis=1, keepdims=True)
    return {"N": n_at, "CA": ca, "C": c_at, "O": o_at}


def _pdb_text(atoms: dict[str, np.ndarray], names: np.ndarray, first: int) -> str:
    lines, serial = [], 1
    for i, resname in enumerate(names):
        for atom in ("N", "CA", "C", "O"):
            x, y, z = atoms[atom][i]
            lines.append(
                f"ATOM  {serial:>5}  {atom:<3} {resname:>3} A{first + i:>4}    "
                f"{x:8.3f}{y:8.3f}{z:8.3f}  1.00  0.00           {atom[0]:>1}"
            )
            serial += 1
    return "\n".join([*lines, "END"]) + "\n"


def _domain_id(rng: np.random.Generator, i: int) -> str:
    letters = "".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz0123456789"), size=3))
    return f"{1 + i % 9}{letters}A{i % 100:02d}"


def write_demo(
    out: str | Path,
    voxelize: Callable[[list[str], str], object],
    n_domains: int = 24,
    seed: int = 0,
    min_residues: int = 30,
    max_residues: int = 300,
) -> DemoDataset:
    """Write structures/, voxels.hdf5 (by `voxelize(structures, voxel_file)`: the voxelize
    step, the path every user structure takes), aggregated_rmsf.csv, split files and
    config.yaml under `out`. `voxelflex.steps.demo_data` calls it with the voxelizer."""
    if n_domains < 3:
        raise InputDataError("the demo needs at least 3 domains (one per split)")
    if not 1 <= min_residues <= max_residues:
        raise InputDataError("need 1 <= min_residues <= max_residues")
    root = Path(out)
    (root / "structures").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    domains: list[str] = []
    while len(domains) < n_domains:
        d = _domain_id(rng, len(domains))
        if d not in domains:
            domains.append(d)
    plans = {}
    for i, domain in enumerate(domains):
        drng = np.random.default_rng([seed, i])
        n = int(drng.integers(max(min_residues, 3), max(max_residues, 3) + 1))
        first = int(drng.integers(1, 60))
        kinds = _segments(drng, n)
        names = drng.choice(RESNAMES, size=n)
        atoms = backbone_from_trace(ca_trace(drng, kinds))
        (root / "structures" / f"{domain}.pdb").write_text(_pdb_text(atoms, names, first))
        plans[domain] = (drng, first, names, kinds)
    voxel_file = root / "voxels.hdf5"
    structures = [str(root / "structures" / f"{d}.pdb") for d in domains]
    voxelize(structures, str(voxel_file))
    rows = []
    with h5py.File(voxel_file, "a") as f:
        f.attrs[SYNTHETIC_ATTR] = (
            "voxelflex demo-data: generated backbones; RMSF from a stated rule, not simulation"
        )
        temps = np.array(TEMPERATURES)
        for domain in domains:
            drng, first, names, kinds = plans[domain]
            chain = f[domain]["A"]
            for j in range(len(names)):
                grid = chain[str(first + j)][()]
                rmsf = rmsf_rule(grid, temps, drng.normal(size=len(temps)))
                density = packing(int(grid.sum()) - len(CHANNELS))
                rsa = float(np.clip(1.0 - density + drng.normal(0, 0.05), 0, 1))
                for t, r in zip(temps, rmsf, strict=True):
                    rows.append((domain, first + j, names[j], t, r, rsa, kinds[j]))
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
