"""Progress bars for long work; `--quiet` or `logging.show_progress: false` turns them off."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
_enabled = True


def set_progress(enabled: bool) -> None:
    global _enabled
    _enabled = enabled


def progress(iterable: Iterable[T] | None = None, **kwargs: Any) -> Any:  # a tqdm
    """tqdm on stderr, or a no-op bar when progress is off."""
    kwargs.setdefault("dynamic_ncols", True)
    kwargs.setdefault("file", sys.stderr)
    # in logs (CI, pipeline pods) a bar redraw is a line: redraw rarely there
    kwargs.setdefault("mininterval", 1.0 if sys.stderr.isatty() else 30.0)
    return tqdm(iterable, disable=not _enabled, **kwargs)
