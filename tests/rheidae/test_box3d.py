"""Box3D's invariants, on random physical moments."""

from __future__ import annotations

import numpy as np
import pytest

from rheidae.box3d import box3d, distributions, minerbo_z, quadrature
from rheidae.demo import initial_moments
from rheidae.moments import N_INDEX, flux_factor, violations


@pytest.fixture(scope="module")
def moments() -> np.ndarray:
    return initial_moments(500, np.random.default_rng(1))


def test_the_closure_reproduces_the_moments_it_was_built_from(moments) -> None:
    dirs, w = quadrature(17)
    x = moments / moments[:, N_INDEX].sum((1, 2))[:, None, None, None]
    f = distributions(x, dirs)
    np.testing.assert_allclose(np.einsum("pqsf,q->psf", f, w), x[:, N_INDEX], rtol=1e-8)
    flux = np.einsum("pqsf,qk,q->pksf", f, dirs, w)
    np.testing.assert_allclose(flux, x[:, :3], atol=1e-8)
    ff = np.array([0.0, 0.3, 0.9, 0.999])
    z = minerbo_z(ff)
    np.testing.assert_allclose(1 / np.tanh(z[1:]) - 1 / z[1:], ff[1:], rtol=1e-9)


def test_number_and_each_lepton_number_are_conserved(moments) -> None:
    res = box3d(moments)
    assert res.crossing.any(1).mean() > 0.5  # most random points have a crossing
    assert violations(res.f4, moments).max() < 1e-12  # totals, lepton numbers, fluxes
    changed = np.abs(res.f4 - moments).max((1, 2, 3)) > 0
    assert (changed == res.crossing.any(1)).all()
    assert (flux_factor(res.f4) < 1).all() and (res.f4[:, N_INDEX] > 0).all()


def test_the_smaller_side_of_a_crossing_is_removed(moments) -> None:
    """After the e-mu step the e-mu lepton-number difference no longer changes sign."""
    from rheidae.moments import PAIRS

    res = box3d(moments[:50])
    dirs, _ = quadrature(17)
    before = distributions(moments[:50] / 1e32, dirs)
    after = distributions(res.f4 / 1e32, dirs)
    a, b = PAIRS[0]

    def g(f):
        return (f[..., 0, a] - f[..., 1, a]) - (f[..., 0, b] - f[..., 1, b])

    def crossing_depth(gg):
        return np.minimum(np.clip(gg, 0, None).sum(1), np.clip(-gg, 0, None).sum(1))

    # moments of the new distribution, re-closed, carry a much shallower e-mu crossing
    assert np.median(crossing_depth(g(after)) / crossing_depth(g(before)).clip(1e-30)) < 0.6


def test_no_crossing_no_change() -> None:
    f4 = np.zeros((1, 4, 2, 3))
    f4[0, N_INDEX] = [[3.0, 1.0, 1.0], [1.0, 1.0, 1.0]]  # isotropic: G = const > 0
    res = box3d(f4 * 1e32)
    assert not res.crossing.any() and np.array_equal(res.f4, f4 * 1e32)


@pytest.mark.parametrize("perm", [[0, 2, 1], [1, 0, 2], [2, 1, 0], [1, 2, 0]])
def test_flavor_permutation_symmetry(moments, perm) -> None:
    """Relabelling the flavors relabels the answer."""
    res, swapped = box3d(moments), box3d(moments[..., perm])
    np.testing.assert_allclose(swapped.f4, res.f4[..., perm], rtol=1e-9, atol=1e21)
    np.testing.assert_array_equal(swapped.crossing.sum(1), res.crossing.sum(1))


def test_unphysical_points_are_flagged_and_do_not_stop_a_batch(moments) -> None:
    bad = moments[:4].copy()
    bad[0, N_INDEX, 0, 0] = -1.0  # negative density
    bad[1, 0, 1, 2] = 2 * bad[1, N_INDEX, 1, 2]  # |F| > N
    bad[2, 1, 0, 1] = np.nan
    res = box3d(bad)
    assert res.unphysical.tolist() == [True, True, True, False]
    np.testing.assert_array_equal(res.f4[:3], bad[:3])
    assert violations(res.f4[3:], bad[3:]).max() < 1e-12
