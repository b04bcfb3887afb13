"""Compile the pipelines to the YAML users upload in the Kubeflow UI (kept in git).

`voxelflex pipeline compile [--out DIR]` or `python -m voxelflex.pipelines.compile`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from kfp import compiler

from voxelflex.pipelines.evaluation_pipeline import voxelflex_evaluation_pipeline
from voxelflex.pipelines.structure_pipeline import voxelflex_structure_pipeline
from voxelflex.pipelines.voxelflex_pipeline import voxelflex_pipeline

COMPILED_DIR = Path(__file__).resolve().parent / "compiled"
PIPELINES: dict[str, Callable] = {
    "voxelflex_pipeline": voxelflex_pipeline,
    "voxelflex_evaluation_pipeline": voxelflex_evaluation_pipeline,
    "voxelflex_structure_pipeline": voxelflex_structure_pipeline,
}


def compile_pipelines(out_dir: str | Path = COMPILED_DIR) -> list[Path]:
    """Write `<name>.yaml` for each pipeline into `out_dir`; returns the files written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, func in PIPELINES.items():
        path = out / f"{name}.yaml"
        compiler.Compiler().compile(func, str(path))
        written.append(path)
    return written


if __name__ == "__main__":
    for p in compile_pipelines(sys.argv[1] if len(sys.argv) > 1 else COMPILED_DIR):
        print(p)
