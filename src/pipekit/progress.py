"""Progress bars for long work; `--quiet` or `logging.show_progress: false` turns them off."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
_enabled = True
# in logs (CI, pipeline pods) each redraw of a bar is a line: redraw rarely there, and show
# a bar only once its work has lasted that long (a short loop's bar was two lines of noise,
# its start and its clearing, per epoch)
LOG_REDRAW_S = 30.0


def set_progress(enabled: bool) -> None:
    global _enabled
    _enabled = enabled


def progress(iterable: Iterable[T] | None = None, **kwargs: Any) -> Any:  # a tqdm
    """tqdm on stderr, or a no-op bar when progress is off."""
    kwargs.setdefault("dynamic_ncols", True)
    kwargs.setdefault("file", sys.stderr)
    if kwargs["file"].isatty():
        kwargs.setdefault("mininterval", 1.0)
    else:
        kwargs.setdefault("mininterval", LOG_REDRAW_S)
        kwargs.setdefault("delay", LOG_REDRAW_S)
    return tqdm(iterable, disable=not _enabled, **kwargs)
