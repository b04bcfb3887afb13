"""Run the whole pipeline on this machine through `kfp.local` (no cluster, no Docker).

Each component runs as a subprocess of the current Python (which must have voxelflex
installed); artifacts land under a local pipeline root. Kubernetes settings are ignored.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voxelflex.config import Config, config_to_dict
from voxelflex.errors import ConfigError

log = logging.getLogger(__name__)

# Config keys that are typed pipeline parameters; everything else travels in `settings`.
TYPED = {
    "model": {"architecture": "architecture"},
    "training": {
        "num_epochs": "num_epochs",
        "batch_size": "batch_size",
        "learning_rate": "learning_rate",
    },
}
SETTINGS_SECTIONS = ("model", "training", "prediction", "logging", "monitoring")
INPUT_URIS = (
    "voxel_file",
    "aggregated_rmsf_file",
    "train_split_file",
    "val_split_file",
    "test_split_file",
)


@dataclass(frozen=True)
class LocalRun:
    run_dir: Path
    # task -> output name -> {"uri": ..., "metadata": {...}} (metrics live in metadata)
    artifacts: dict[str, dict[str, dict[str, Any]]]


def pipeline_arguments(
    cfg: Config,
    temperatures: list[float] | None = None,
    split: str = "test",
    mirror_uri: str | None = None,
) -> dict[str, Any]:
    """The pipeline's parameters for a config: input URIs and the typed settings as
    parameters, the rest of the model/training/prediction/logging sections as `settings`.
    `mirror_uri` ("" for beside the voxel file) turns the mirror step on."""
    raw = config_to_dict(cfg)
    missing = [k for k in INPUT_URIS if not raw["input"][k]]
    if missing:
        raise ConfigError(f"the pipeline needs input.{missing[0]} in the config")
    args: dict[str, Any] = {k: raw["input"][k] for k in INPUT_URIS}
    args["max_domains"] = raw["input"]["max_domains"] or 0
    settings: dict[str, Any] = {}
    for section in SETTINGS_SECTIONS:
        values = dict(raw[section])
        for key, param in TYPED.get(section, {}).items():
            args[param] = values.pop(key)
        # KFP parameters cannot carry null; a key left out takes its (null) default
        settings[section] = {k: v for k, v in values.items() if v is not None}
    args["settings"] = settings
    args["eval_split"] = split
    if mirror_uri is not None:
        args["mirror_to_zarr"] = True
        args["mirror_uri"] = mirror_uri
    if temperatures:
        args["predict_temperatures"] = [float(t) for t in temperatures]
    return args


def _collect(run_dir: Path) -> dict[str, dict[str, dict[str, Any]]]:
    out: dict[str, dict[str, dict[str, Any]]] = {}
    # in the order the tasks ran
    done = sorted(run_dir.glob("*/executor_output.json"), key=lambda p: p.stat().st_mtime_ns)
    for executor_output in done:
        data = json.loads(executor_output.read_text())
        task = executor_output.parent.name
        for name, entry in data.get("artifacts", {}).items():
            art = entry["artifacts"][0]
            out.setdefault(task, {})[name] = {"uri": art["uri"], "metadata": art.get("metadata")}
    return out


def run_local(
    cfg: Config,
    pipeline_root: str | Path,
    temperatures: list[float] | None = None,
    split: str = "test",
    mirror_uri: str | None = None,
    params: dict[str, Any] | None = None,
) -> LocalRun:
    """Run the pipeline with `kfp.local`'s SubprocessRunner; returns where everything is."""
    from kfp import local

    from voxelflex.pipelines.voxelflex_pipeline import voxelflex_pipeline

    root = Path(pipeline_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    before = set(root.iterdir())
    args = {**pipeline_arguments(cfg, temperatures, split, mirror_uri), **(params or {})}
    # components run as subprocesses: they get the config's storage options the way a pod
    # gets its secret, from the environment (fsspec reads FSSPEC_<PROTOCOL>_<OPTION>)
    for protocol, opts in cfg.input.storage_options.items():
        for key, value in opts.items():
            os.environ[f"FSSPEC_{protocol.upper()}_{key.upper()}"] = str(value)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root))
    with warnings.catch_warnings():
        # image, GPU and resource settings are for the cluster; locally they are expected no-ops
        warnings.filterwarnings("ignore", message=".*(non-Python base image|have no effect).*")
        voxelflex_pipeline(**args)
    (run_dir,) = set(root.iterdir()) - before
    return LocalRun(run_dir, _collect(run_dir))
