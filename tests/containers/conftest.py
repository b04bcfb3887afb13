"""Container tests: the project's image (the `image` fixture, tests/conftest.py) run as on
a cluster, with a real S3 API on the host's loopback as its object store."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def store_env(s3_endpoint: str) -> dict[str, str]:
    """What a pod's S3 secret gives its step: credentials and the endpoint (moto's server on
    the host's loopback); the buckets the tests use exist."""
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": s3_endpoint,
    }
    fs = _fs(env)
    for bucket in ("voxelflex", "lab"):
        if not fs.exists(bucket):
            fs.mkdir(bucket)
    return env


def _fs(env: dict[str, str]):
    import s3fs

    return s3fs.S3FileSystem(
        key=env["AWS_ACCESS_KEY_ID"],
        secret=env["AWS_SECRET_ACCESS_KEY"],
        endpoint_url=env["AWS_ENDPOINT_URL"],
        skip_instance_cache=True,
    )


def upload(env: dict[str, str], local: Path, uri: str) -> str:
    """Put a local file or folder at `uri`; returns the URI."""
    fs = _fs(env)
    key = uri.removeprefix("s3://")
    if Path(local).is_dir():
        for file in sorted(p for p in Path(local).rglob("*") if p.is_file()):
            fs.put_file(str(file), f"{key}/{file.relative_to(local).as_posix()}")
    else:
        fs.put_file(str(local), key)
    return uri


def listing(env: dict[str, str], uri: str) -> set[str]:
    """The files under `uri`, relative to it."""
    fs = _fs(env)
    key = uri.removeprefix("s3://").rstrip("/")
    return {p[len(key) + 1 :] for p in fs.find(key)}


def read_bytes(env: dict[str, str], uri: str) -> bytes:
    return _fs(env).cat_file(uri.removeprefix("s3://"))
