"""The CPU limit read as the kernel writes it: cgroup v2's `cpu.max`, v1's quota and period.
(The limit applied in a container under `docker run --cpus` is in tests/containers.)"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipekit.cpus import cpu_limit, cpu_quota, worker_count


def _files(tmp_path: Path, v2: str | None, v1: tuple[str, str] | None):
    two = tmp_path / "cpu.max"
    one = (tmp_path / "cpu.cfs_quota_us", tmp_path / "cpu.cfs_period_us")
    if v2 is not None:
        two.write_text(v2 + "\n")
    if v1 is not None:
        for f, text in zip(one, v1, strict=True):
            f.write_text(text + "\n")
    return two, one


@pytest.mark.parametrize(
    ("v2", "v1", "cores"),
    [
        ("max 100000", None, None),  # v2, no limit
        ("150000 100000", None, 1.5),  # v2, limits.cpu: 1500m
        ("50000 100000", ("200000", "100000"), 0.5),  # v2 wins where both exist
        (None, ("-1", "100000"), None),  # v1, no limit
        (None, ("400000", "100000"), 4.0),  # v1, limits.cpu: 4
        (None, None, None),  # no cgroup files at all (a laptop, macOS)
    ],
)
def test_quota_is_read_from_either_cgroup_version(tmp_path, v2, v1, cores) -> None:
    two, one = _files(tmp_path, v2, v1)
    assert cpu_quota(two, one) == cores


def test_threads_are_the_quota_rounded_up_and_never_above_the_cores() -> None:
    cores = len(os.sched_getaffinity(0))
    assert cpu_limit(0.5) == 1
    assert cpu_limit(1.5) == min(cores, 2)
    assert cpu_limit(10_000.0) == cores


def test_workers_stop_at_the_limit_and_say_so_once(monkeypatch, caplog) -> None:
    monkeypatch.setattr("pipekit.cpus._CAPPED", set())
    cores = len(os.sched_getaffinity(0))
    with caplog.at_level("INFO", logger="pipekit.cpus"):
        assert worker_count(0, "training.num_workers", quota=0.5) == 0  # in-process loading
        assert worker_count(8, "training.num_workers", quota=0.5) == 1
        assert worker_count(8, "training.num_workers", quota=0.5) == 1  # each epoch's loader
        assert worker_count(8, "training.num_workers", quota=100.0) == min(8, cores)
    said = [r.getMessage() for r in caplog.records]
    assert said[0] == "training.num_workers: 1 workers, the CPU limit (asked for 8)"
    assert len(said) == 1
