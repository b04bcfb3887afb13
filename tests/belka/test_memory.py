"""The shuffle buffers sized in bytes and checked against the memory limit at start; the
featurizing processes held to the CPU limit."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from belka.config import load_config
from belka.data.dataset import MIXING_COPIES, buffer_rows, row_bytes
from belka.data.store import Store
from belka.parallel import Pool
from pipekit.errors import ConfigError
from pipekit.memory import memory_limit, physical_memory
from tests.belka.conftest import run_belka, write_config


@pytest.mark.parametrize(
    ("text", "expect_gib"),
    [("1073741824\n", 1.0), ("max\n", None), ("9223372036854771712\n", None)],
)
def test_the_pods_limit_is_read_from_its_cgroup(tmp_path: Path, text, expect_gib) -> None:
    f = tmp_path / "memory.max"
    f.write_text(text)
    got = memory_limit((tmp_path / "absent", f))
    assert got == (physical_memory() if expect_gib is None else int(expect_gib * 2**30))


def test_the_buffer_holds_what_its_bytes_allow(prepared: Path, belka_demo, monkeypatch) -> None:
    monkeypatch.setattr("pipekit.cpus.cpu_limit", lambda quota=None: 8)  # 8 cores allowed
    cfg = load_config(str(write_config(prepared, belka_demo)))
    store = Store.open(str(prepared / "work" / "belka.tfr"))
    arrays = store.read(0)
    per = sum(a.nbytes for a in arrays.values()) / len(arrays["mol_id"])
    assert row_bytes(store) == pytest.approx(per)
    t = replace(cfg.training, buffer_size=None, buffer_bytes=int(per * 5000), batch_size=64)
    system = replace(cfg.system, n_workers=8, memory_limit=2**34)
    assert buffer_rows(t, system, store) == 5000
    assert buffer_rows(replace(t, buffer_size=700), system, store) == 700  # molecules win
    # 8 workers x 2 copies x 5000 molecules does not fit 80% of this limit
    small = replace(system, memory_limit=int(8 * MIXING_COPIES * 5000 * per / 0.8) - 1)
    with pytest.raises(ConfigError, match="lower training.buffer_bytes"):
        buffer_rows(t, small, store)
    # under a 2-core limit only 2 loader workers start, and their buffers fit
    monkeypatch.setattr("pipekit.cpus.cpu_limit", lambda quota=None: 2)
    assert buffer_rows(t, small, store) == 5000


def test_a_buffer_over_the_limit_stops_training_in_one_line(prepared: Path, belka_demo) -> None:
    import shutil

    work = prepared.parent / "memory_check"
    shutil.copytree(prepared / "work", work / "work")
    config = write_config(work, belka_demo)
    res = run_belka(
        config,
        "--step",
        "train_model",
        "--mode",
        "mlm",
        "--set",
        "training.buffer_size=null",
        "--set",
        "system.memory_limit=1000000",
    )
    assert res.returncode == 2, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if "shuffle buffers need" in ln]
    assert len(lines) == 1 and "GiB memory limit" in lines[0], res.stderr


def _pid() -> object:
    return lambda _: os.getpid()


def test_featurizing_processes_stop_at_the_cpu_limit(monkeypatch, caplog) -> None:
    monkeypatch.setattr("pipekit.cpus.cpu_quota", lambda: 1.0)  # limits.cpu: 1
    monkeypatch.setattr("pipekit.cpus._CAPPED", set())  # reported once per process: not yet
    with caplog.at_level("INFO"), Pool(_pid, 8, chunk=1) as pool:
        assert pool.workers == 1 and set(pool.map(range(4))) == {os.getpid()}  # in this process
    assert "system.n_workers: 1 workers, the CPU limit (asked for 8)" in caplog.text
    if len(os.sched_getaffinity(0)) >= 2:
        monkeypatch.setattr("pipekit.cpus.cpu_quota", lambda: 2.0)
        with Pool(_pid, 8, chunk=1) as pool:
            pids = set(pool.map(range(64)))
        assert pool.workers == 2 and len(pids) <= 2 and os.getpid() not in pids
