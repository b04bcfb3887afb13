"""Releases that match the code: the images install what the tests ran, and a step refuses
an image that holds other code than the pipeline was compiled from."""

from __future__ import annotations

import json
import re
from importlib import metadata
from pathlib import Path

import pytest

from pipekit import release

ROOT = Path(__file__).resolve().parents[2]


def _pins() -> dict[str, str]:
    lines = (ROOT / "images" / "constraints.txt").read_text().splitlines()
    pairs = (line.split("==") for line in lines if line and not line.startswith("#"))
    return {name: version for name, version in pairs}


def test_the_constraints_are_what_this_environment_runs() -> None:
    """`make test` installs with images/constraints.txt, so a stale file shows here."""
    assert (ROOT / "images" / "constraints.txt").read_text() == release.constraints()
    pins = _pins()
    for name, version in pins.items():
        assert metadata.version(name) == version, name
    runtime = {release._name(r) for r in metadata.distribution(release.DIST).requires or []}
    runtime -= release.UNPINNED
    assert runtime <= set(pins)  # every direct dependency, extras included, is pinned


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.cuda"])
def test_images_install_with_the_constraints(dockerfile: str) -> None:
    text = (ROOT / "images" / dockerfile).read_text()
    assert "COPY pyproject.toml images/constraints.txt /tmp/build/" in text
    assert "install.sh deps" in text
    assert '-c "$build/constraints.txt"' in (ROOT / "images" / "install.sh").read_text()


def test_a_step_refuses_an_image_with_other_code(monkeypatch) -> None:
    from voxelflex import kfp_io

    release.check_image(None)  # a local run, or a pipeline compiled without a stamp
    release.check_image(release.code_digest())
    monkeypatch.setenv(release.DIGEST_ENV, "0123456789abcdef")
    with pytest.raises(release.ReleaseMismatch, match="compiled from code 0123456789abcdef"):
        kfp_io.component_config({})


def test_the_released_record_is_versions_to_digests() -> None:
    record = json.loads((ROOT / "images" / "released.json").read_text())
    assert isinstance(record, dict)
    for version, digest in record.items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", version) and re.fullmatch(r"[0-9a-f]{16}", digest)
