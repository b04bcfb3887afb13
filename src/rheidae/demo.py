"""Demo data in the database layout (`F4_initial(1|ccm)`, `F4_final(1|ccm)`,
`growthRate(1|s)`), so every step runs here in seconds.

Initial moments are physically valid at random: number densities around 1e32-1e33 per ccm,
flux factors below 0.7 in random directions, so most points have an ELN crossing. The rule
for the final moments: the Box3D prediction plus a smooth correction that keeps every
conservation law, applied only where Box3D finds a crossing (no crossing, no change):

- number densities: each flavor's N and Nbar move by the same delta_a = c (s_a - mean s),
  s_a = (N_a + Nbar_a) / 2, c = -0.12 (1 + tanh(3 (ff_e - ffbar_e))) / 2: the flavors'
  totals draw closer, each lepton number and the totals stay;
- fluxes: F_a -> F_a + c_F (F_a - mean_a F) for neutrinos and antineutrinos apart,
  c_F = -0.2 (1 + tanh(2 (N_e - Nbar_e) / (N_e + Nbar_e))) / 2: the total fluxes stay.

So the residual (final - Box3D) is a smooth function of the inputs a model can learn, and
Box3D alone is off by exactly it. A point whose corrected moments break causality gets a
smaller correction.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import yaml

from rheidae.box3d import box3d
from rheidae.data.raw import DB_FINAL, DB_GROWTH, DB_INITIAL
from rheidae.moments import N_INDEX, flux_factor


@dataclass(frozen=True)
class Demo:
    root: Path
    database: Path
    n_runs: int
    model_config: Path
    train_parms: Path
    pre_process: Path


def initial_moments(n: int, rng: np.random.Generator) -> np.ndarray:
    dens = rng.lognormal(np.log(3e32), 0.5, (n, 2, 3))
    ff = rng.uniform(0.0, 0.7, (n, 2, 3))
    d = rng.normal(size=(n, 3, 2, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return np.concatenate([d * (dens * ff)[:, None], dens[:, None]], axis=1)  # (n, 4, 2, 3)


def correction(f4_init: np.ndarray, f4_box: np.ndarray) -> np.ndarray:
    """The conserving, smooth change the demo adds to Box3D (see the module docstring)."""
    ff = flux_factor(f4_init)
    n = f4_init[:, N_INDEX]  # (P, 2, 3)
    c = -0.12 * (1 + np.tanh(3 * (ff[:, 0, 0] - ff[:, 1, 0]))) / 2  # (P,)
    eln = (n[:, 0, 0] - n[:, 1, 0]) / (n[:, 0, 0] + n[:, 1, 0])
    c_f = -0.2 * (1 + np.tanh(2 * eln)) / 2
    nb = f4_box[:, N_INDEX]
    s = (nb[:, 0] + nb[:, 1]) / 2  # (P, 3)
    delta = c[:, None] * (s - s.mean(1, keepdims=True))  # (P, 3)
    out = np.zeros_like(f4_box)
    out[:, N_INDEX] = delta[:, None, :]  # the same for nu and nubar
    flux = f4_box[:, :3]  # (P, 3, 2, 3)
    out[:, :3] = c_f[:, None, None, None] * (flux - flux.mean(-1, keepdims=True))
    return out


def make_database(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    f4_init = initial_moments(n, rng)
    box = box3d(f4_init)
    corr = correction(f4_init, box.f4) * box.crossing.any(1)[:, None, None, None]
    scale = np.ones(n)
    for _ in range(6):  # causality: shrink the correction where it would break it
        final = box.f4 + corr * scale[:, None, None, None]
        broken = (flux_factor(final) >= 1).any((1, 2)) | (final[:, N_INDEX] <= 0).any((1, 2))
        if not broken.any():
            break
        scale[broken] /= 2
    depth = np.abs(f4_init[:, N_INDEX, 0, 0] - f4_init[:, N_INDEX, 1, 0]) / f4_init[:, N_INDEX].sum(
        (1, 2)
    )
    growth = 1e10 * (0.2 + 5 * depth) * rng.lognormal(0, 0.2, n)
    return f4_init, final, growth


def make_demo(out: str | Path, n_runs: int = 4000, seed: int = 0) -> Demo:
    root = Path(out).resolve()
    raw = root / ".data"
    raw.mkdir(parents=True, exist_ok=True)
    f4_init, f4_final, growth = make_database(n_runs, seed)
    db = raw / "demo_database.h5"
    with h5py.File(db, "w") as f:
        f.create_dataset(DB_INITIAL, data=f4_init)
        f.create_dataset(DB_FINAL, data=f4_final)
        f.create_dataset(DB_GROWTH, data=growth)
    cfg = root / "config"
    cfg.mkdir(exist_ok=True)
    pre = cfg / "pre_process.yaml"
    pre.write_text(
        yaml.safe_dump({"input": {"raw_dir": "../.data"}, "output": {"dir": "../.pdata"}})
    )
    model = cfg / "model.yaml"
    model.write_text(
        yaml.safe_dump(
            {
                "data": {"path": "../.pdata/preprocessed_all.h5", "batch_size": 128},
                "model": {"hidden_dims": [128, 128]},
                "optimizer": {"lr": 2.0e-3},
                "training": {"epochs": 60, "patience": 15, "output_dir": "../results"},
            },
            sort_keys=False,
        )
    )
    parms = cfg / "train_parms.yaml"
    parms.write_text(
        yaml.safe_dump(
            {
                "targets": {"predict_residual": True},
                "checkpoint": {"every": 20, "dir": "../checkpoints"},
            },
            sort_keys=False,
        )
    )
    return Demo(root, db, n_runs, model, parms, pre)
