"""The data-wait share: a loader as slow as the step waits half the time."""

from __future__ import annotations

import time

import torch

from pipekit.timing import DataWait, peak_memory_gib


def _slow(n: int, seconds: float):
    for i in range(n):
        time.sleep(seconds)
        yield i


def test_waiting_is_the_loaders_share_of_the_pass() -> None:
    waited = DataWait(_slow(10, 0.03))
    for _ in waited:
        time.sleep(0.03)  # the step's own work
    assert 0.35 < waited.fraction < 0.65
    fast = DataWait(range(10))
    for _ in fast:
        time.sleep(0.01)
    assert fast.fraction < 0.05


def test_no_peak_memory_off_cuda() -> None:
    assert peak_memory_gib(torch.device("cpu")) is None
