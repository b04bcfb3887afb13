"""Named crash points, for tests that kill a real process at a write point.

`PIPEKIT_CRASH_AT=<label>[:<n>]` makes the n-th (default first) pass through
`crashpoint(label)` end the process with SIGKILL, exactly as `kill -9` would: no cleanup,
no exception handlers, no flush. `PIPEKIT_HOLD_AT=<label>[:<n>]` instead stops the process
there, after saying so on stderr (`HOLD_MARK label`), until something outside kills it: a
test that kills a whole container (`docker kill`) waits for the line, then kills. Unset
(always, outside tests), a crash point does nothing.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections import Counter

ENV = "PIPEKIT_CRASH_AT"
HOLD_ENV = "PIPEKIT_HOLD_AT"
HOLD_MARK = "pipekit: holding at"
_passes: Counter[str] = Counter()


def _reached(want: str | None, label: str) -> bool:
    if not want:
        return False
    name, _, nth = want.partition(":")
    return name == label and _passes[label] == int(nth or 1)


def crashpoint(label: str) -> None:
    crash, hold = os.environ.get(ENV), os.environ.get(HOLD_ENV)
    if not (crash or hold):
        return
    _passes[label] += 1
    if _reached(crash, label):
        os.kill(os.getpid(), signal.SIGKILL)
    if _reached(hold, label):
        print(f"{HOLD_MARK} {label}", file=sys.stderr, flush=True)
        while True:  # until killed from outside
            time.sleep(3600)
