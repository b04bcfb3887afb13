"""Named crash points, for tests that kill a real process at a write point.

`PIPEKIT_CRASH_AT=<label>[:<n>]` makes the n-th (default first) pass through
`crashpoint(label)` end the process with SIGKILL, exactly as `kill -9` would: no cleanup,
no exception handlers, no flush. Unset (always, outside tests), a crash point does nothing.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

ENV = "PIPEKIT_CRASH_AT"
_passes: Counter[str] = Counter()


def crashpoint(label: str) -> None:
    want = os.environ.get(ENV)
    if not want:
        return
    name, _, nth = want.partition(":")
    if name != label:
        return
    _passes[label] += 1
    if _passes[label] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
