"""Tiny Rheidae data: a demo database and configs, and Emu-style reduced time series."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from rheidae.data.raw import OFFDIAG, TIME, reduced_name
from rheidae.demo import initial_moments, make_demo

FAST_MODEL = {
    "training": {"epochs": 30, "patience": 30},
    "model": {"hidden_dims": [64, 64]},
    "logging": {"show_progress": False},
}


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory):
    d = make_demo(tmp_path_factory.mktemp("rheidae"), n_runs=1500, seed=0)
    values = yaml.safe_load(d.model_config.read_text())
    for section, keys in FAST_MODEL.items():
        values.setdefault(section, {}).update(keys)
    d.model_config.write_text(yaml.safe_dump(values))
    return d


@pytest.fixture(autouse=True)
def in_project(demo, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test runs from the demo's project folder, as the lab's make targets do: the
    configs' relative paths (.data, .pdata, results, checkpoints) are read from there."""
    monkeypatch.chdir(demo.root)


@pytest.fixture(scope="session")
def preprocessed(demo):
    import os

    from rheidae.config import load_preprocess
    from rheidae.steps import preprocess

    before = os.getcwd()
    os.chdir(demo.root)
    try:
        preprocess.run(load_preprocess(str(demo.pre_process), ["logging.show_progress=false"]))
    finally:
        os.chdir(before)
    return demo


def write_reduced(
    path: Path,
    f4_initial: np.ndarray,
    f4_final: np.ndarray,
    saturate: bool = True,
    noise: float = 0.0,
    seed: int = 0,
) -> Path:
    """A reduced0D.h5 as Emu's reduction writes it: one 1-D dataset per column, named
    `N00(1|ccm)` ... `Fz22bar(1|ccm)`, `time(s)`, `N_offdiag_mag(1|ccm)`. The moments relax
    from the initial to the final state while the off-diagonal part grows exponentially,
    peaks and settles."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 2e-9, 200)
    tp = 8e-10
    w = 1 / (1 + np.exp(-(t - tp) / 5e-11))  # (T,) 0 -> 1 around the saturation time
    series = f4_initial[None] + w[:, None, None, None] * (f4_final - f4_initial)[None]
    series = series * (1 + noise * rng.standard_normal(series.shape))
    total = f4_initial[3].sum()
    off = total * (1e-8 * np.exp(np.minimum(t, tp) / 4e-11) * (1 if saturate else 0) + 1e-10)
    off = np.where(t > tp, off.max() * (0.6 + 0.05 * np.sin(t * 1e10)), off) if saturate else off
    with h5py.File(path, "w") as f:
        f.create_dataset(TIME, data=t)
        f.create_dataset(OFFDIAG, data=off)
        comps = ("Fx", "Fy", "Fz", "N")
        for c, comp in enumerate(comps):
            for s, bar in enumerate((False, True)):
                for fl in range(3):
                    f.create_dataset(reduced_name(comp, fl, bar), data=series[:, c, s, fl])
    return path


@pytest.fixture
def one_run() -> tuple[np.ndarray, np.ndarray]:
    from rheidae.demo import pair_conversion

    f4 = initial_moments(1, np.random.default_rng(5))
    return f4[0], pair_conversion(f4)[0]
