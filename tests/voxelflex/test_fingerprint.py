"""Content fingerprints for cache keys: they change when content changes, never otherwise."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipekit.errors import InputDataError
from pipekit.fingerprint import fingerprint


def test_a_local_file_rewritten_in_place_changes_its_fingerprint(tmp_path: Path) -> None:
    csv, split = tmp_path / "rmsf.csv", tmp_path / "train.txt"
    csv.write_text("a,b\n1,2\n")
    split.write_text("d1\n")
    before = fingerprint([str(csv), str(split)])
    assert fingerprint([str(csv), str(split)]) == before  # stable while nothing changes
    csv.write_text("a,b\n3,4\n")  # same size, new content (new modification time)
    os.utime(csv, ns=(0, csv.stat().st_mtime_ns + 1_000_000_000))
    assert fingerprint([str(csv), str(split)]) != before


def test_a_folder_counts_every_file_in_it(tmp_path: Path) -> None:
    store = tmp_path / "voxels.packed"
    (store / "voxels").mkdir(parents=True)
    (store / "index.parquet").write_bytes(b"x" * 10)
    before = fingerprint([str(store)])
    (store / "voxels" / "c0").write_bytes(b"chunk")
    assert fingerprint([str(store)]) != before


def test_object_storage_uses_the_etag(s3) -> None:
    s3.pipe_file("voxelflex/fp/rmsf.csv", b"a,b\n1,2\n")
    uri = "s3://voxelflex/fp/rmsf.csv"
    before = fingerprint([uri])
    assert fingerprint([uri]) == before
    s3.pipe_file("voxelflex/fp/rmsf.csv", b"a,b\n3,4\n")  # same size, new content
    s3.invalidate_cache()
    assert fingerprint([uri]) != before


def test_a_store_that_says_nothing_of_content_is_cached_for_a_day(monkeypatch) -> None:
    import fsspec

    from pipekit import fingerprint as fp

    with fsspec.open("memory://fp/splits.txt", "w") as fh:  # memory: size only, no time
        fh.write("d1\n")
    monkeypatch.setattr(fp, "_today", lambda: "2026-11-22")
    today = fingerprint(["memory://fp/splits.txt"])
    monkeypatch.setattr(fp, "_today", lambda: "2026-11-23")
    assert fingerprint(["memory://fp/splits.txt"]) != today


def test_a_missing_input_is_named() -> None:
    with pytest.raises(InputDataError, match="input not found: /nope/voxels.hdf5"):
        fingerprint(["/nope/voxels.hdf5"])
