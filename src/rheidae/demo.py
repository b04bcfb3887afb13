"""Demo data in the database layout (`F4_initial(1|ccm)`, `F4_final(1|ccm)`,
`growthRate(1|s)`), so every step runs here in seconds.

Initial moments are physically valid at random: number densities around 1e32-1e33 per ccm,
flux factors below 0.7 in random directions, mu and tau alike (as a classical merger
simulation's single heavy species gives them).

The final moments come from a rule that knows nothing of Box3D (no angular distribution, no
closure, no quadrature): **pair conversion driven by a guaranteed ELN crossing**.

- The e-x lepton-number moments n_L = (N_e - Nbar_e) - (N_x - Nbar_x) and
  F_L = (F_e - Fbar_e) - (F_x - Fbar_x) (x: the mean of mu and tau) prove a crossing when
  |F_L| > |n_L| (a distribution of one sign has |integral of G n| <= |integral of G|). The
  excess s = (|F_L| - |n_L|) / total N measures the instability; the share converted is
  sigmoid((s - S0) / SW), S0 = -0.05, SW = 0.03 (near-crossings convert a little too).
- Fast conversion keeps each lepton number, so flavor moves in nu-nubar pairs: delta pairs of
  nu_e nubar_e become nu_x nubar_x (half to mu, half to tau), or back when delta < 0.
  delta = share x the mean of the neutrinos' and antineutrinos' distance to equipartition,
  2 (N_e - N_x) / 3 and 2 (Nbar_e - Nbar_x) / 3, kept within 90% of what the giving species
  hold.
- Converted particles carry their source species' mean flux per particle (F/N), so the total
  fluxes stay and no species' flux factor leaves [0, 1).

Every conservation law holds (total nu and nubar numbers and fluxes, each flavor's lepton
number); the rule differs from Box3D, so the model's residual over Box3D is a learnable
function and "beats Box3D" is measured against an independent truth.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import yaml

from rheidae.data.raw import DB_FINAL, DB_GROWTH, DB_INITIAL
from rheidae.moments import N_INDEX, total_number
from rheidae.project import write_project

S0, SW = -0.05, 0.03  # the conversion share: sigmoid((s - S0) / SW)


@dataclass(frozen=True)
class Demo:
    root: Path
    database: Path
    n_runs: int
    model_config: Path
    train_parms: Path
    pre_process: Path


def initial_moments(n: int, rng: np.random.Generator, heavy_alike: bool = True) -> np.ndarray:
    """(n, 4, 2, 3) valid moments; mu = tau unless `heavy_alike` is False."""
    dens = rng.lognormal(np.log(3e32), 0.5, (n, 2, 3))
    ff = rng.uniform(0.0, 0.7, (n, 2, 3))
    d = rng.normal(size=(n, 3, 2, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    if heavy_alike:
        dens[..., 2], ff[..., 2], d[..., 2] = dens[..., 1], ff[..., 1], d[..., 1]
    return np.concatenate([d * (dens * ff)[:, None], dens[:, None]], axis=1)  # (n, 4, 2, 3)


def strength(f4: np.ndarray) -> np.ndarray:
    """(|F_L| - |n_L|) / total N of the e-x lepton-number moments, (P,); > 0 proves a crossing."""
    heavy = f4[..., 1:].mean(-1)  # (P, 4, 2)
    eln = (f4[..., 0, 0] - f4[..., 1, 0]) - (heavy[..., 0] - heavy[..., 1])  # (P, 4)
    return (np.linalg.norm(eln[:, :3], axis=1) - np.abs(eln[:, N_INDEX])) / total_number(f4)


def pair_conversion(f4: np.ndarray) -> np.ndarray:
    """The demo's final moments (P, 4, 2, 3) for initial moments `f4` (module docstring)."""
    n = f4[:, N_INDEX]  # (P, 2, 3)
    to_eq = 2 * (n[..., 0] - n[..., 1:].mean(-1)) / 3  # (P, 2): nu, nubar to equipartition
    share = 1 / (1 + np.exp(-(strength(f4) - S0) / SW))
    delta = np.clip(
        to_eq.mean(1) * share, -0.9 * 2 * n[..., 1:].min((1, 2)), 0.9 * n[..., 0].min(1)
    )
    per_particle = f4 / n[:, None]  # (P, 4, 2, 3): F/N and 1
    out = f4.copy()
    gives_e = (delta > 0)[:, None, None]  # (P, 1, 1)
    d = np.abs(delta)[:, None, None]
    # e -> x: e loses delta with its own F/N, mu and tau gain delta/2 each of it
    e_loss = d * per_particle[..., 0]  # (P, 4, 2)
    # x -> e: mu and tau lose delta/2 each with their own F/N, e gains the sum
    x_loss = d[..., None] / 2 * per_particle[..., 1:]  # (P, 4, 2, 2)
    out[..., 0] += np.where(gives_e, -e_loss, x_loss.sum(-1))
    out[..., 1:] += np.where(gives_e[..., None], e_loss[..., None] / 2, -x_loss)
    return out


def make_database(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    f4_init = initial_moments(n, rng)
    final = pair_conversion(f4_init)
    growth = 1e10 * (0.2 + 20 * np.clip(strength(f4_init), 0, None)) * rng.lognormal(0, 0.2, n)
    return f4_init, final, growth


CAVEAT = (
    "Demo data: random initial moments whose final states follow the demo's documented "
    "pair-conversion rule (independent of Box3D), not simulations. These figures show that the "
    "pipeline works and how the model and Box3D compare on that rule, not on real fast-flavor "
    "instabilities."
)


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
    pre.write_text(yaml.safe_dump({"input": {"raw_dir": ".data"}, "output": {"dir": ".pdata"}}))
    model = cfg / "model.yaml"
    model.write_text(
        yaml.safe_dump(
            {
                "data": {"path": ".pdata/preprocessed_all.h5", "batch_size": 128},
                "model": {"hidden_dims": [128, 128]},
                "optimizer": {"lr": 2.0e-3},
                "training": {"epochs": 60, "patience": 15, "output_dir": "results"},
                "report": {"caveat": CAVEAT},
            },
            sort_keys=False,
        )
    )
    parms = cfg / "train_parms.yaml"
    parms.write_text(
        yaml.safe_dump(
            {
                "targets": {"predict_residual": True},
                "checkpoint": {"every": 20, "dir": "checkpoints"},
            },
            sort_keys=False,
        )
    )
    write_project(root)  # the Makefile; the configs above are kept
    return Demo(root, db, n_runs, model, parms, pre)
