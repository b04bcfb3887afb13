"""Work split K of N ways: the items of a pipeline's `dsl.ParallelFor` fan-out and the
`--shard K/N` flag of the commands that take one share of a job."""

from __future__ import annotations

from typing import Any

from pipekit.errors import InputDataError, PipelineError


def shard_specs(n: int, what: str = "shards") -> list[dict[str, int]]:
    """The fan-out's items, one per share: {"shard": k, "shards": n}."""
    if n < 1:
        raise InputDataError(f"{what} must be >= 1, not {n}")
    return [{"shard": k, "shards": n} for k in range(n)]


def shard_of(spec: dict[str, Any]) -> tuple[int, int]:
    """A fan-out item back to (k, n) (pipeline parameters turn ints into floats)."""
    return int(spec["shard"]), int(spec["shards"])


def parse_shard(value: str | None) -> tuple[int, int] | None:
    """`--shard K/N` -> (K, N); None when not given."""
    if not value:
        return None
    k, sep, n = value.partition("/")
    if not sep or not k.isdigit() or not n.isdigit() or not int(k) < int(n):
        raise PipelineError(f"--shard must look like 0/4 (K below N), not {value!r}")
    return int(k), int(n)
