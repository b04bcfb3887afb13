"""Raw FFI simulation outputs: a database file of many runs, or Emu's per-run reduced time
series (`reduced0D.h5`), each turned into (initial F4, final F4, growth rate) per run.

Database: `F4_initial(1|ccm)` and `F4_final(1|ccm)` (runs, 4, 2, 3), `growthRate(1|s)` (runs,).
Reduced time series: `time(s)`, `N00(1|ccm)` ... `N22bar(1|ccm)`, `Fx00(1|ccm)` ...
`Fz22bar(1|ccm)` and `N_offdiag_mag(1|ccm)`, one value per output time. The initial state is
the first sample; the final state the average after saturation (the peak of the off-diagonal
magnitude), over the last `final_window` of what follows it; a run whose off-diagonal part
never grew, whose final window drifts (relative spread), or whose conserved quantities moved
(total number and flux, each flavor's lepton number) is refused with the reason.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import h5py
import numpy as np

from pipekit.errors import InputDataError
from rheidae.config.schema import StabilityConfig
from rheidae.moments import violations

log = logging.getLogger(__name__)

DB_INITIAL = "F4_initial(1|ccm)"
DB_FINAL = "F4_final(1|ccm)"
DB_GROWTH = "growthRate(1|s)"
TIME = "time(s)"
OFFDIAG = "N_offdiag_mag(1|ccm)"


class BadRun(Exception):
    """A run that cannot be used; the message says why (it is listed, not fatal)."""


@dataclass(frozen=True)
class Runs:
    initial: np.ndarray  # (R, 4, 2, 3)
    final: np.ndarray  # (R, 4, 2, 3)
    growth: np.ndarray  # (R,) 1/s (NaN when unknown)
    ids: list[str]  # per run: "<file>" or "<file>#<index>"


def reduced_name(comp: str, flavor: int, bar: bool) -> str:
    return f"{comp}{flavor}{flavor}{'bar' if bar else ''}(1|ccm)"


def is_database(f: h5py.File) -> bool:
    return DB_INITIAL in f


def read_database(f: h5py.File, name: str) -> tuple[Runs, dict[str, str]]:
    """The runs of a database file; runs with non-finite values are listed, not read."""
    missing = [k for k in (DB_INITIAL, DB_FINAL) if k not in f]
    if missing:
        raise InputDataError(f"{name}: database lacks dataset(s) {missing}")
    ini, fin = f[DB_INITIAL][()], f[DB_FINAL][()]
    for key, arr in ((DB_INITIAL, ini), (DB_FINAL, fin)):
        if arr.ndim != 4 or arr.shape[1:] != (4, 2, 3):
            raise InputDataError(f"{name}: {key} has shape {arr.shape}, expected (runs, 4, 2, 3)")
    if len(ini) != len(fin):
        raise InputDataError(f"{name}: {len(ini)} initial but {len(fin)} final states")
    growth = f[DB_GROWTH][()] if DB_GROWTH in f else np.full(len(ini), np.nan)
    if growth.shape != (len(ini),):
        raise InputDataError(
            f"{name}: {DB_GROWTH} has shape {growth.shape}, expected ({len(ini)},)"
        )
    ids = [f"{name}#{i}" for i in range(len(ini))]
    ok = np.isfinite(ini).all((1, 2, 3)) & np.isfinite(fin).all((1, 2, 3))
    bad = {ids[i]: "non-finite moments" for i in np.flatnonzero(~ok)}
    keep = np.flatnonzero(ok)
    return Runs(ini[keep], fin[keep], growth[keep], [ids[i] for i in keep]), bad


def _series(f: h5py.File, name: str) -> np.ndarray:
    """(T, 4, 2, 3) from the reduced time series' named columns."""
    comps = ("Fx", "Fy", "Fz", "N")
    cols = []
    for c in comps:
        for bar in (False, True):
            for fl in range(3):
                key = reduced_name(c, fl, bar)
                if key not in f:
                    raise BadRun(f"missing dataset {key}")
                cols.append(np.asarray(f[key][()], dtype=np.float64))
    lengths = {len(c) for c in cols}
    if len(lengths) != 1:
        raise BadRun(f"datasets of unequal length {sorted(lengths)}")
    return np.stack(cols, axis=1).reshape(-1, 4, 2, 3)


def read_reduced(
    f: h5py.File, name: str, s: StabilityConfig
) -> tuple[np.ndarray, np.ndarray, float]:
    """(initial F4, final F4, growth rate) of one run's reduced time series."""
    for key in (TIME, OFFDIAG):
        if key not in f:
            raise BadRun(f"missing dataset {key}")
    t = np.asarray(f[TIME][()], dtype=np.float64)
    off = np.asarray(f[OFFDIAG][()], dtype=np.float64)
    series = _series(f, name)
    if len(t) != len(series) or len(off) != len(t):
        raise BadRun("time, off-diagonal and moment series differ in length")
    if len(t) < 4 or not (np.isfinite(series).all() and np.isfinite(off).all()):
        raise BadRun("fewer than 4 samples, or non-finite values")
    peak = int(np.argmax(off))
    if off[peak] < s.min_growth_factor * max(off[0], 1e-300) or peak >= len(t) - 2:
        raise BadRun("no saturation: the off-diagonal magnitude never grew and settled")
    after = np.arange(peak, len(t))
    window = after[int(len(after) * (1 - s.final_window)) :]
    if len(window) < 2:
        raise BadRun("too few samples after saturation")
    final = series[window].mean(0)
    n_window = series[window][:, 3]  # (W, 2, 3)
    spread = float((n_window.std(0) / np.maximum(np.abs(n_window.mean(0)), 1e-300)).max())
    if spread > s.max_relative_spread:
        raise BadRun(
            f"final state not settled: relative spread {spread:.3g} > {s.max_relative_spread}"
        )
    worst = float(violations(final, series[0]).max())
    if worst > s.conservation_tolerance:
        raise BadRun(
            f"conservation violated: {worst:.3g} of the total number > {s.conservation_tolerance}"
        )
    # growth rate from the exponential phase: the slope of log|offdiag| up to the peak
    rise = np.arange(0, peak + 1)
    grow = off[rise] > 0
    rate = (
        float(np.polyfit(t[rise][grow], np.log(off[rise][grow]), 1)[0])
        if grow.sum() > 2
        else np.nan
    )
    return series[0], final, rate


def read_file(path: str, s: StabilityConfig) -> tuple[Runs, dict[str, str]]:
    """A database or a reduced time series; returns the runs and {run: reason} refused."""
    name = path.rsplit("/", 1)[-1]
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        return Runs(np.empty((0, 4, 2, 3)), np.empty((0, 4, 2, 3)), np.empty(0), []), {
            name: f"not an HDF5 file ({exc})"
        }
    with f:
        if is_database(f):
            return read_database(f, name)
        try:
            ini, fin, rate = read_reduced(f, name, s)
        except BadRun as exc:
            return Runs(np.empty((0, 4, 2, 3)), np.empty((0, 4, 2, 3)), np.empty(0), []), {
                name: str(exc)
            }
    return Runs(ini[None], fin[None], np.array([rate]), [name]), {}
