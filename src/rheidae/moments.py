"""The 24 moments of one point and the laws they obey.

`F4` has axes (xyzt, nu/nubar, flavor) = (4, 2, 3): xyzt = (Fx, Fy, Fz, N), index 0 of the
second axis neutrinos, 1 antineutrinos, flavors (e, mu, tau). Flattened in C order it is the
24-vector the model reads and writes (`input` = initial 24 + Box3D 24, `target` = final 24).

In FFI (no collisions, no vacuum or matter term) the lepton-number matrix integrated over
angles is conserved, so each flavor's lepton number N_a - Nbar_a is conserved, and so are the
total neutrino and antineutrino numbers and the total fluxes (the trace of each direction's
density matrix is)."""

from __future__ import annotations

import numpy as np

SHAPE = (4, 2, 3)
N_INDEX = 3  # the t (number density) component of xyzt
FLAVORS = ("e", "mu", "tau")
PAIRS = ((0, 1), (0, 2), (1, 2))


def flat(f4: np.ndarray) -> np.ndarray:
    """(..., 4, 2, 3) -> (..., 24)."""
    return f4.reshape(*f4.shape[:-3], 24)


def unflat(x: np.ndarray) -> np.ndarray:
    """(..., 24) -> (..., 4, 2, 3)."""
    return x.reshape(*x.shape[:-1], *SHAPE)


def names() -> list[str]:
    """The 24 components' names in flat order, e.g. `Fx_nu_e`, `N_nubar_tau`."""
    comps, kinds = ("Fx", "Fy", "Fz", "N"), ("nu", "nubar")
    return [f"{c}_{k}_{f}" for c in comps for k in kinds for f in FLAVORS]


def conserved(f4: np.ndarray) -> np.ndarray:
    """The conserved quantities (..., 11): total nu and nubar number, each flavor's lepton
    number, and the total nu and nubar flux vectors."""
    n = f4[..., N_INDEX, :, :]  # (..., 2, 3)
    totals = n.sum(-1)  # (..., 2)
    lepton = n[..., 0, :] - n[..., 1, :]  # (..., 3)
    flux = f4[..., :3, :, :].sum(-1).reshape(*f4.shape[:-3], 6)  # (..., 6)
    return np.concatenate([totals, lepton, flux], axis=-1)


def total_number(f4: np.ndarray) -> np.ndarray:
    """N summed over nu, nubar and the three flavors, per point (...,): the scale every
    relative error and violation is measured against."""
    return f4[..., N_INDEX, :, :].sum((-1, -2))


def violations(f4: np.ndarray, f4_ref: np.ndarray) -> np.ndarray:
    """|conserved(f4) - conserved(f4_ref)| relative to the total number, per point (..., 11)."""
    scale = total_number(f4_ref)[..., None]
    return np.abs(conserved(f4) - conserved(f4_ref)) / np.maximum(scale, 1e-300)


def flux_factor(f4: np.ndarray) -> np.ndarray:
    """|F| / N per species (..., 2, 3)."""
    return np.linalg.norm(f4[..., :3, :, :], axis=-3) / f4[..., N_INDEX, :, :]


def unphysical(f4: np.ndarray) -> np.ndarray:
    """Points no angular distribution has: non-finite, N <= 0 or |F| >= N for a species."""
    finite = np.isfinite(f4).all((-1, -2, -3))
    n = f4[..., N_INDEX, :, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        ok = (n > 0).all((-1, -2)) & (flux_factor(f4) < 1).all((-1, -2))
    return ~(finite & ok)
