"""Progress bars in logs (not a terminal): a short loop's bar prints nothing, not a start
line and a clearing line per epoch; work that lasts shows its bar, redrawn rarely."""

from __future__ import annotations

import time

import pytest

from pipekit.progress import progress


@pytest.fixture(autouse=True)
def _bars_on(monkeypatch) -> None:
    # a command run earlier in this process with --quiet turned the bars off for it
    monkeypatch.setattr("pipekit.progress._enabled", True)


def test_a_short_loop_leaves_no_lines_in_a_log(capsys) -> None:
    for leave in (False, True):
        assert sum(progress(range(50), desc="epoch 1", leave=leave)) == 1225
    assert capsys.readouterr().err == ""


def test_lasting_work_shows_its_bar_in_a_log(capsys, monkeypatch) -> None:
    monkeypatch.setattr("pipekit.progress.LOG_REDRAW_S", 0.05)  # 30 s in a real log
    for _ in progress(range(3), desc="embed", unit="seq"):
        time.sleep(0.05)
    err = capsys.readouterr().err
    assert "embed" in err and "3/3" in err, err
