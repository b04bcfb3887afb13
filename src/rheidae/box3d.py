"""Box3D: the asymptotic state of fast flavor conversion from the moments alone, as published
by Richers et al. 2024 (arXiv 2409.04405, Sec. III, Eqs. 6-7 and 20-22): Zaizen & Nagakura's
box method for three flavors with mu and tau alike.

1. The heavy flavors are one species x: the mu and tau moments are averaged (the method, like
   the lab's Julia preprocessing with its nu_x column, assumes mu = tau).
2. Each of nu_e, nubar_e, nu_x, nubar_x gets the maximum-entropy (Minerbo) distribution of its
   density N and flux F (Eqs. 6-7): f(n) = N Z / (4 pi sinh Z) exp(Z n.F/|F|), with
   coth Z - 1/Z = |F|/N, evaluated on a Lebedev quadrature.
3. The ELN-XLN distribution G(n) = (f_e - fbar_e) - (f_x - fbar_x) (Eq. 20); I+ and I- are the
   integrals of G over G > 0 and of -G over G < 0. Without a crossing (either is 0) nothing
   changes.
4. Survival probability (Eq. 21): P = 1/3 on the side with the smaller integral (flavor
   equipartition there), P = 1 - 2 I_small / (3 I_large) on the other side, which keeps each
   lepton number.
5. Mixed distributions (Eq. 22), neutrinos and antineutrinos alike:
   f_e' = P f_e + (1 - P) f_x and f_x' = ((1 - P) f_e + (1 + P) f_x) / 2 for each of mu, tau.

The change of each species' moments is integrated over the quadrature and added to the input
moments (for mu and tau, to their average), so what the method conserves (total nu and nubar
numbers and fluxes, the electron lepton number, the sum of the mu and tau lepton numbers) is
conserved to rounding, and a point without a crossing is returned as it is. With mu = tau
inputs every flavor's lepton number is kept.

Vectorized over points with numpy; unphysical points (non-finite, N <= 0, |F| >= N) are
flagged and returned unchanged, never failing a batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from rheidae.moments import N_INDEX, total_number, unphysical

DEFAULT_ORDER = 17  # 110 Lebedev points
P_SMALL = 1 / 3  # survival on the smaller side: equipartition among three flavors


@lru_cache(maxsize=8)
def quadrature(order: int = DEFAULT_ORDER) -> tuple[np.ndarray, np.ndarray]:
    """(directions (Q, 3), weights (Q,)) of a Lebedev rule; the weights sum to 4 pi."""
    from scipy.integrate import lebedev_rule

    x, w = lebedev_rule(order)
    return x.T.copy(), w.copy()


def _langevin(z: np.ndarray) -> np.ndarray:
    """coth z - 1/z, the flux factor of a Minerbo distribution (series near 0)."""
    small = np.abs(z) < 1e-3
    zs = np.where(small, 1.0, z)
    return np.where(small, z / 3 - z**3 / 45, 1 / np.tanh(zs) - 1 / zs)


def minerbo_z(flux_factor: np.ndarray, iterations: int = 60) -> np.ndarray:
    """Z with coth Z - 1/Z = flux factor (0 <= ff < 1), by bisection (monotone, vectorized)."""
    ff = np.clip(flux_factor, 0.0, 1 - 1e-9)
    lo, hi = np.zeros_like(ff), np.full_like(ff, 1.0)
    while True:  # bracket: the Langevin function approaches 1 like 1 - 1/Z
        short = _langevin(hi) < ff
        if not short.any():
            break
        hi = np.where(short, hi * 2, hi)
    for _ in range(iterations):
        mid = (lo + hi) / 2
        below = _langevin(mid) < ff
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    return (lo + hi) / 2


def distributions(f4: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """Angular distributions (P, Q, 2, F) of each species of `f4` (P, 4, 2, F) on the
    quadrature directions."""
    n = f4[:, N_INDEX]  # (P, 2, F)
    flux = np.moveaxis(f4[:, :3], 1, -1)  # (P, 2, F, 3 xyz)
    norm = np.linalg.norm(flux, axis=-1)  # (P, 2, F)
    z = minerbo_z(norm / n)
    unit = flux / np.where(norm > 0, norm, 1.0)[..., None]
    mu = np.einsum("qk,psfk->pqsf", dirs, unit)  # cos angle to the flux, (P, Q, 2, F)
    zz = z[:, None]
    # N Z / (4 pi sinh Z) exp(Z mu), written to stay finite for large Z and exact at Z = 0
    safe = np.where(zz > 1e-6, zz, 1.0)
    shape = np.where(
        zz > 1e-6,
        safe / (2 * np.pi * (1 - np.exp(-2 * safe))) * np.exp(safe * (mu - 1)),
        1 / (4 * np.pi),
    )
    return n[:, None] * shape


def moments_of(f: np.ndarray, dirs: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The moments (P, 4, 2, F) of distributions `f` (P, Q, 2, F) by the quadrature."""
    n = np.einsum("pqsf,q->psf", f, w)
    flux = np.einsum("pqsf,qk,q->pksf", f, dirs, w)
    return np.concatenate([flux, n[:, None]], axis=1)


def survival(g: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eq. 21: the survival probability (P, Q) for ELN-XLN distributions `g` (P, Q), and
    whether each point has a crossing (P,)."""
    pos = (np.clip(g, 0, None) * w).sum(1)
    neg = (np.clip(-g, 0, None) * w).sum(1)
    # a side below rounding of the other is no crossing (a flat G has both near 0)
    has = (pos > 1e-12 * (pos + neg)) & (neg > 1e-12 * (pos + neg))
    small_is_pos = pos <= neg
    small, large = np.where(small_is_pos, pos, neg), np.where(small_is_pos, neg, pos)
    ratio = small / np.where(large > 0, large, 1.0)
    on_small = np.where(small_is_pos[:, None], g > 0, g < 0)
    p = np.where(on_small, P_SMALL, 1 - 2 * ratio[:, None] / 3)
    return np.where(has[:, None], p, 1.0), has


@dataclass(frozen=True)
class Box3DResult:
    f4: np.ndarray  # (P, 4, 2, 3) the asymptotic moments
    crossing: np.ndarray  # (P,) bool, an ELN-XLN crossing (only such points change)
    unphysical: np.ndarray  # (P,) bool, left unchanged


def box3d(f4: np.ndarray, order: int = DEFAULT_ORDER) -> Box3DResult:
    """The Box3D asymptotic moments of each point of `f4` (P, 4, 2, 3)."""
    f4 = np.asarray(f4, dtype=np.float64)
    bad = unphysical(f4)
    out = f4.copy()
    crossing = np.zeros(len(f4), dtype=bool)
    good = np.flatnonzero(~bad)
    if len(good) == 0:
        return Box3DResult(out, crossing, bad)
    dirs, w = quadrature(order)
    x = f4[good]
    scale = total_number(x)[:, None, None, None]  # work in O(1) numbers
    two = np.stack([x[..., 0], x[..., 1:].mean(-1)], axis=-1) / scale  # (P, 4, 2, e|x)
    f = distributions(two, dirs)  # (P, Q, 2, 2)
    fe, fx = f[..., 0], f[..., 1]  # (P, Q, 2): nu, nubar
    g = (fe[..., 0] - fe[..., 1]) - (fx[..., 0] - fx[..., 1])  # Eq. 20, (P, Q)
    p, has = survival(g, w)
    p = p[..., None]  # nu and nubar alike
    mixed = np.stack([p * fe + (1 - p) * fx, ((1 - p) * fe + (1 + p) * fx) / 2], axis=-1)
    change = moments_of(mixed - f, dirs, w) * scale  # (P, 4, 2, e|x)
    new = np.empty_like(x)
    new[..., 0] = x[..., 0] + change[..., 0]
    heavy = x[..., 1:].mean(-1) + change[..., 1]
    new[..., 1], new[..., 2] = heavy, heavy
    # a point without a crossing keeps its moments as given (mu and tau not averaged)
    out[good] = np.where(has[:, None, None, None], new, x)
    crossing[good] = has
    return Box3DResult(out, crossing, bad)
