"""Split files: one domain ID per line; blanks, `#` comments, whitespace and CRLF tolerated."""

from __future__ import annotations

from pipekit.errors import InputDataError
from pipekit.uri import open_uri, require_file
from voxelflex.config import InputConfig

SPLITS = ("train", "val", "test")


def read_split_file(uri: str) -> list[str]:
    """Domain IDs in file order, each once."""
    with open_uri(uri, "rb") as fh:
        text = fh.read().decode("utf-8-sig")
    seen: dict[str, None] = {}
    for line in text.splitlines():
        domain = line.split("#", 1)[0].strip()
        if domain:
            seen.setdefault(domain, None)
    return list(seen)


def read_splits(inp: InputConfig) -> dict[str, list[str]]:
    """The three splits; test may be absent. A domain in two splits is an error (leakage)."""
    files = {
        "train": require_file(inp.train_split_file, "input.train_split_file"),
        "val": require_file(inp.val_split_file, "input.val_split_file"),
        "test": (
            require_file(inp.test_split_file, "input.test_split_file")
            if inp.test_split_file
            else None
        ),
    }
    splits = {name: read_split_file(uri) if uri else [] for name, uri in files.items()}
    if not splits["train"]:
        raise InputDataError(f"train split file {files['train']} lists no domains")
    owner: dict[str, str] = {}
    for name in SPLITS:
        for domain in splits[name]:
            if domain in owner:
                raise InputDataError(
                    f"domain {domain!r} is in both the {owner[domain]} split "
                    f"({files[owner[domain]]}) and the {name} split ({files[name]}): "
                    "a domain must be in one split only (else test leaks into training)"
                )
            owner[domain] = name
    if inp.max_domains is not None:
        splits = {name: ids[: inp.max_domains] for name, ids in splits.items()}
    return splits
