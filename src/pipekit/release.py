"""Releases that match the code: pinned dependencies, and images tied to what is compiled.

- `images/constraints.txt` pins every package `lab-pipelines[dev,s3,kfp]` pulls in (torch aside:
  its build differs per machine and it is pinned on its own) to the version tested. `make
  test` installs with it and the images build with it, so the image runs what the tests ran;
  `python -m pipekit.release constraints` writes it from the current environment.
- `code_digest()` hashes the project's own code (every package of the distribution) as
  installed. Compiling stamps it on every
  step (`PIPEKIT_CODE_DIGEST`); a step whose image holds other code refuses to run, naming
  both, instead of running an older release with a newer pipeline.
- `images/released.json` records, per released image version, the digest it was built from;
  `pipeline submit` refuses to compile a checkout whose code is not the released image's.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from importlib import metadata
from pathlib import Path

from pipekit.errors import PipelineError

DIGEST_ENV = "PIPEKIT_CODE_DIGEST"
EXTRAS = ("dev", "s3", "kfp")
DIST = "lab-pipelines"  # the distribution holding pipekit and every system
UNPINNED = {"torch", DIST}  # torch: per-machine build, pinned by its own line


class ReleaseMismatch(PipelineError):
    """The code that would run is not the code that was released or compiled."""


def _package_roots() -> list[tuple[str, Path]]:
    """(dotted name, folder) of the distribution's packages as installed, with each system's
    KFP face (`<system>.components`, installed from another folder in a checkout and inside
    its system's folder in an image)."""
    from importlib.util import find_spec

    names = sorted(n for n, d in metadata.packages_distributions().items() if DIST in d)
    roots = []
    for name in names:
        for mod_name in (name, f"{name}.components"):
            # found, not imported: inside a running step kfp.dsl has no `component` decorator
            # (the KFP runtime leaves it out), so importing the components would fail there
            spec = find_spec(mod_name)
            if spec is None or not spec.origin:  # no KFP face
                continue
            roots.append((mod_name, Path(spec.origin).parent))
    return roots


def code_digest() -> str:
    """SHA-256 (16 hex) of the project's Python code and packaged config, as installed (the
    compiled pipeline YAML is left out: it carries the digest). Files are named by their
    place in the package tree, not on disk, so an editable checkout and an image installed
    from it agree."""
    files: dict[str, Path] = {}
    for mod_name, root in _package_roots():
        for path in root.rglob("*"):
            if path.suffix not in (".py", ".yaml") or "compiled" in path.parts:
                continue
            rel = path.relative_to(root).as_posix()
            files.setdefault(f"{mod_name.replace('.', '/')}/{rel}", path)
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(f"{name}\n".encode())
        h.update(files[name].read_bytes())
    return h.hexdigest()[:16]


def check_image(expected: str | None) -> None:
    """In a step: refuse when the pipeline was compiled from other code than this image's."""
    if expected and expected != code_digest():
        raise ReleaseMismatch(
            f"this step's image runs code {code_digest()}, but the pipeline was compiled from "
            f"code {expected}: build and push the image for this code (docs/runbook.md: "
            "releases), or run the pipeline YAML of the released version"
        )


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;(]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _closure(root: str, extras: tuple[str, ...]) -> dict[str, str]:
    """{distribution: installed version} of everything `root[extras]` needs here."""
    from packaging.requirements import Requirement

    found: dict[str, str] = {}
    todo = [(root, extras)]
    while todo:
        name, wanted = todo.pop()
        dist = metadata.distribution(name)
        for raw in dist.requires or []:
            req = Requirement(raw)
            envs = [{"extra": e} for e in wanted] or [{"extra": ""}]
            if req.marker and not any(req.marker.evaluate(env) for env in envs):
                continue
            key = _name(req.name)
            if key in found:
                continue
            try:
                found[key] = metadata.version(req.name)
            except metadata.PackageNotFoundError:
                continue  # an optional dependency not installed here
            todo.append((req.name, tuple(req.extras)))
    return found


def constraints() -> str:
    """The constraints file for the current environment."""
    pins = _closure(DIST, EXTRAS)
    lines = [f"{name}=={version}" for name, version in sorted(pins.items()) if name not in UNPINNED]
    head = (
        "# Every package lab-pipelines[dev,s3,kfp] pulls in, at the version tested (torch is\n"
        "# pinned on its own). Written by `python -m pipekit.release constraints`; used by\n"
        "# `make test` and both images: what CI tests is what the images run.\n"
    )
    return head + "\n".join(lines) + "\n"


def released(path: Path) -> dict[str, str]:
    return json.loads(path.read_text()) if path.is_file() else {}


def check_released(path: Path, version: str) -> None:
    """Refuse to submit code that no released image holds."""
    want = released(path).get(version)
    now = code_digest()
    if want != now:
        raise ReleaseMismatch(
            f"the checkout's code ({now}) is not what image {version} was built from "
            f"({want or 'not released'}): release a new version (docs/runbook.md: releases), or "
            "submit the released pipeline YAML with --package"
        )


def main(argv: list[str]) -> int:
    if argv == ["constraints"]:
        sys.stdout.write(constraints())
        return 0
    if argv == ["digest"]:
        print(code_digest())
        return 0
    print("usage: python -m pipekit.release constraints|digest", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
