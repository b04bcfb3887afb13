"""Per-run logging: INFO progress, WARNING skipped records, ERROR with the fix; a file per run."""

from __future__ import annotations

import logging

from pipekit.uri import ensure_dir, is_local, local_path

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

# whether the command was given -v: a local pipeline run then shows the KFP executor's
# bookkeeping too (the config's level alone cannot tell INFO by default from INFO by -v)
_verbose = False


def set_verbose(on: bool) -> None:
    global _verbose
    _verbose = on


def verbose() -> bool:
    return _verbose


def _not_an_unclosed_session(record: logging.LogRecord) -> bool:
    """aiohttp reports each client session it finds unclosed when it is garbage-collected, as
    an asyncio ERROR. s3fs leaves one behind whenever the object store stops answering, so a
    storage outage ended in a heap of these around the one line that says what happened."""
    return not record.getMessage().startswith(("Unclosed client session", "Unclosed connector"))


def setup_logging(level: str = "INFO", log_file: str | None = None) -> None:
    """Console at `level`; the run's log file (local run dirs) keeps INFO and above even when
    the console is quieter, so a `-q` run still leaves a full record."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.setLevel(min(logging.getLevelName(level), logging.INFO))
    console = logging.StreamHandler()
    console.setLevel(level)
    console.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    root.addHandler(console)
    # Object-store run dirs get their log through the step's artifacts, not a live file handle.
    if log_file and is_local(log_file):
        path = local_path(log_file)
        ensure_dir(path.rsplit("/", 1)[0])
        handler = logging.FileHandler(path)
        handler.setLevel(min(logging.getLevelName(level), logging.INFO))
        handler.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(handler)
    asyncio_log = logging.getLogger("asyncio")
    if _not_an_unclosed_session not in asyncio_log.filters:
        asyncio_log.addFilter(_not_an_unclosed_session)
    for noisy in ("matplotlib", "fsspec", "h5py", "PIL", "urllib3", "botocore", "s3fs"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
