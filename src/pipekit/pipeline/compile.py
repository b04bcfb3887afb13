"""Compile pipelines to the YAML users upload in the Kubeflow UI (kept in git, in
`pipelines/compiled/`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from kfp import compiler

Pipelines = Mapping[str, Callable]


def compile_pipelines(pipelines: Pipelines, out_dir: str | Path) -> list[Path]:
    """Write `<name>.yaml` for each pipeline into `out_dir`; returns the files written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, func in pipelines.items():
        path = out / f"{name}.yaml"
        compiler.Compiler().compile(func, str(path))
        written.append(path)
    return written
