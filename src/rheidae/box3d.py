"""Box3D: the asymptotic state of fast flavor conversion from the moments alone (Zaizen &
Nagakura's box prescription, extended to three flavors pair by pair).

For each species, the angular distribution is reconstructed from its density N and flux F
with the maximum-entropy (Minerbo) closure, f(n) = N Z / (4 pi sinh Z) exp(Z n.F/|F|), whose
flux factor coth Z - 1/Z equals |F|/N, and evaluated on a Lebedev quadrature. For each flavor
pair (a, b), deepest crossing first (so the answer does not depend on how the flavors are
labelled), the lepton-number difference G(n) = (f_a - fbar_a) - (f_b - fbar_b) is examined:
where it changes sign (a crossing), with A = the integral of G over G > 0 and B = that of -G
over G < 0, the smaller side is fully mixed (survival probability P = 1/2) and the larger side
mixed by P = 1 - min(A, B) / (2 max(A, B)); neutrinos and antineutrinos of the pair mix alike:
f_a' = P f_a + (1 - P) f_b. This keeps the total number per direction and each flavor's
lepton number, and removes the smaller side of the crossing. The change is integrated back
over the quadrature and added to the input moments, so what the prescription conserves is
conserved to rounding and a point without a crossing is returned as it is.

Vectorized over points with numpy; unphysical points (non-finite, N <= 0, |F| >= N) are
flagged and returned unchanged, never failing a batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from rheidae.moments import N_INDEX, PAIRS, unphysical

DEFAULT_ORDER = 17  # 110 Lebedev points


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
    """Angular distributions (P, Q, 2, 3) of each species on the quadrature directions."""
    n = f4[:, N_INDEX]  # (P, 2, 3)
    flux = np.moveaxis(f4[:, :3], 1, -1)  # (P, 2, 3, 3 xyz)
    norm = np.linalg.norm(flux, axis=-1)  # (P, 2, 3)
    z = minerbo_z(norm / n)
    unit = flux / np.where(norm > 0, norm, 1.0)[..., None]
    mu = np.einsum("qk,psfk->pqsf", dirs, unit)  # cos angle to the flux, (P, Q, 2, 3)
    zz = z[:, None]
    # N Z / (4 pi sinh Z) exp(Z mu), written to stay finite for large Z and exact at Z = 0
    safe = np.where(zz > 1e-6, zz, 1.0)
    shape = np.where(
        zz > 1e-6,
        safe / (2 * np.pi * (1 - np.exp(-2 * safe))) * np.exp(safe * (mu - 1)),
        1 / (4 * np.pi),
    )
    return n[:, None] * shape


def _eln(f: np.ndarray, a: int, b: int) -> np.ndarray:
    """G(n) of the flavor pair (a, b): (f_a - fbar_a) - (f_b - fbar_b), (P, Q)."""
    return (f[..., 0, a] - f[..., 1, a]) - (f[..., 0, b] - f[..., 1, b])


def _sides(g: np.ndarray, w: np.ndarray) -> np.ndarray:
    """(A, B): the integrals of G over G > 0 and of -G over G < 0, each (P,)."""
    return np.stack([(np.clip(g, 0, None) * w).sum(1), (np.clip(-g, 0, None) * w).sum(1)])


@dataclass(frozen=True)
class Box3DResult:
    f4: np.ndarray  # (P, 4, 2, 3) the asymptotic moments
    crossing: np.ndarray  # (P, 3) bool, a crossing per flavor pair (e-mu, e-tau, mu-tau)
    unphysical: np.ndarray  # (P,) bool, left unchanged


def box3d(f4: np.ndarray, order: int = DEFAULT_ORDER) -> Box3DResult:
    """The Box3D asymptotic moments of each point of `f4` (P, 4, 2, 3)."""
    f4 = np.asarray(f4, dtype=np.float64)
    bad = unphysical(f4)
    out = f4.copy()
    crossing = np.zeros((len(f4), len(PAIRS)), dtype=bool)
    good = np.flatnonzero(~bad)
    if len(good) == 0:
        return Box3DResult(out, crossing, bad)
    dirs, w = quadrature(order)
    x = f4[good]
    scale = x[:, N_INDEX].sum((1, 2))[:, None, None, None]  # work in O(1) numbers
    f = distributions(x / scale, dirs)  # (P, Q, 2, 3)
    f_new = f.copy()
    rows = np.arange(len(x))
    pairs = np.array(PAIRS)  # (3, 2)
    # deepest crossing first: the order then depends on the moments, not on the flavors'
    # labels, so relabelling flavors relabels the answer exactly
    depth = np.stack([_sides(_eln(f, a, b), w).min(0) for a, b in PAIRS], 1)  # (P, 3)
    order = np.argsort(-depth, axis=1, kind="stable")
    for step in range(len(PAIRS)):
        k = order[:, step]  # (P,) the pair each point treats now
        a, b = pairs[k, 0], pairs[k, 1]
        fa, fb = f_new[rows, :, :, a], f_new[rows, :, :, b]  # (P, Q, 2)
        g = (fa[..., 0] - fa[..., 1]) - (fb[..., 0] - fb[..., 1])  # (P, Q)
        pos, neg = _sides(g, w)
        has = (pos > 1e-12 * (pos + neg)) & (neg > 1e-12 * (pos + neg))
        crossing[good[has], k[has]] = True
        small, large = np.minimum(pos, neg), np.maximum(pos, neg)
        ratio = np.where(has, small / np.where(large > 0, large, 1.0), 0.0)
        on_small = np.where((pos <= neg)[:, None], g > 0, g < 0)
        p = np.where(on_small, 0.5, 1 - ratio[:, None] / 2)  # (P, Q)
        p = np.where(has[:, None], p, 1.0)[..., None]  # (P, Q, 1): nu and nubar alike
        f_new[rows, :, :, a] = p * fa + (1 - p) * fb
        f_new[rows, :, :, b] = p * fb + (1 - p) * fa
    delta = f_new - f  # (P, Q, 2, 3)
    d_n = np.einsum("pqsf,q->psf", delta, w)
    d_flux = np.einsum("pqsf,qk,q->pksf", delta, dirs, w)
    change = np.concatenate([d_flux, d_n[:, None]], axis=1) * scale
    out[good] = x + change
    return Box3DResult(out, crossing, bad)
