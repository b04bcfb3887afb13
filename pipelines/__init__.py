"""Every system's Kubeflow pipelines, by system. `pipelines_of(system)` imports only that
system's pipelines (a system's CLI never loads another system's components)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

# where `<system> pipeline compile` writes; the YAML users upload (kept in git)
COMPILED_DIR = Path(__file__).resolve().parent / "compiled"

# system -> pipeline name -> "module:function"
PIPELINES: dict[str, dict[str, str]] = {
    "voxelflex": {
        "voxelflex_pipeline": "voxelflex_pipeline:voxelflex_pipeline",
        "voxelflex_evaluation_pipeline": "evaluation_pipeline:voxelflex_evaluation_pipeline",
        "voxelflex_structure_pipeline": "structure_pipeline:voxelflex_structure_pipeline",
    },
    "esm2pairs": {"esm2pairs_pipeline": "esm2pairs_pipeline:esm2pairs_pipeline"},
    "rheidae": {"rheidae_pipeline": "rheidae_pipeline:rheidae_pipeline"},
    "belka": {"belka_pipeline": "belka_pipeline:belka_pipeline"},
}


# pipeline name -> the parameters naming paths it writes outside its artifacts (a shared
# cache, a promotion record, a packed mirror): `--runner docker` mounts them writable
WRITES: dict[str, tuple[str, ...]] = {
    "voxelflex_pipeline": ("mirror_uri", "accepted_metrics_uri"),
    "voxelflex_evaluation_pipeline": ("accepted_metrics_uri",),
    "esm2pairs_pipeline": ("embeddings_uri",),
}


def pipelines_of(system: str) -> dict[str, Callable]:
    """{pipeline name: pipeline function} of one system."""
    out = {}
    for name, target in PIPELINES[system].items():
        module, func = target.split(":")
        out[name] = getattr(importlib.import_module(f"lab_pipelines.{module}"), func)
    return out
