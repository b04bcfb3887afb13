"""Run the whole pipeline on this machine through `kfp.local` (no cluster, no Docker).

Each component runs as a subprocess of the current Python (which must have voxelflex
installed); artifacts land under a local pipeline root. Kubernetes settings are ignored.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from voxelflex.config import Config, config_to_dict
from voxelflex.errors import ConfigError, VoxelFlexError

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


def settings_of(cfg: Config, typed: bool = False) -> dict[str, Any]:
    """The config sections a pipeline takes as its `settings` parameter (without the keys
    that are typed parameters of their own when `typed`)."""
    raw = config_to_dict(cfg)
    settings: dict[str, Any] = {}
    for section in SETTINGS_SECTIONS:
        values = {
            k: v for k, v in raw[section].items() if not (typed and k in TYPED.get(section, {}))
        }
        # KFP parameters cannot carry null; a key left out takes its (null) default
        settings[section] = {k: v for k, v in values.items() if v is not None}
    return settings


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
    for section, keys in TYPED.items():
        for key, param in keys.items():
            args[param] = raw[section][key]
    args["settings"] = settings_of(cfg, typed=True)
    args["eval_split"] = split
    if mirror_uri is not None:
        args["mirror_to_zarr"] = True
        args["mirror_uri"] = mirror_uri
    if temperatures:
        from voxelflex.steps.predict import check_temperatures

        check_temperatures(temperatures)  # before any step runs, not after training
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


def publish(cfg: Config, run: LocalRun) -> str:
    """Copy the main pipeline's outputs where the step commands look for them: the config's
    run folder (models, metrics, visualizations, history) and `data.processed_dir` (the
    sample metadata), so `voxelflex predict|evaluate|visualize --config` work after a local
    pipeline run. Each step's log is appended to the run's log. Returns the run folder."""
    from fsspec.core import url_to_fs

    from voxelflex.data.uri import join_uri, local_path
    from voxelflex.paths import RunPaths

    paths = RunPaths.from_config(cfg)
    logs: list[str] = []
    for task, outputs in run.artifacts.items():
        for art in outputs.values():
            folder = Path(local_path(art["uri"]))
            if not folder.is_dir():  # metrics, markdown, HTML: single-file artifacts
                continue
            for file in sorted(p for p in folder.rglob("*") if p.is_file()):
                rel = file.relative_to(folder).as_posix()
                if rel.startswith("logs/"):
                    logs.append(f"==> {task}: {rel}\n{file.read_text(errors='replace')}")
                    continue
                base = paths.processed_dir if rel == "master_samples.parquet" else paths.run_dir
                fs, dst = url_to_fs(join_uri(base, rel))
                fs.makedirs(dst.rsplit("/", 1)[0], exist_ok=True)
                fs.put_file(str(file), dst)
    if logs:
        fs, dst = url_to_fs(paths.log_file)
        fs.makedirs(dst.rsplit("/", 1)[0], exist_ok=True)
        with fs.open(dst, "w") as fh:
            fh.write("\n".join(logs))
    return paths.run_dir


def _for_this_machine(node: Any) -> None:
    """No retry policies, and metrics on any free port instead of the pods' fixed one (a
    second local run, or a test beside a demo, would find it taken)."""
    from voxelflex.monitoring import ENV_PORT

    if isinstance(node, dict):
        node.pop("retryPolicy", None)
        if node.get("name") == ENV_PORT and "value" in node:
            node["value"] = "0"
        for value in node.values():
            _for_this_machine(value)
    elif isinstance(node, list):
        for value in node:
            _for_this_machine(value)


def _without_retries(func: Any, workdir: Path) -> Any:
    """The pipeline as compiled for the cluster, minus its retry policies (kfp.local honours
    them, and a mistake here should fail in seconds, not after two 60 s and 120 s backoffs
    meant for a node lost on a cluster) and with metrics on a free port."""
    from kfp import compiler, components

    path = workdir / "pipeline.yaml"
    compiler.Compiler().compile(func, str(path))
    spec = next(yaml.safe_load_all(path.read_text()))  # the platform (Kubernetes) part is unused
    _for_this_machine(spec)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return components.load_component_from_file(str(path))


def run_local(
    cfg: Config,
    pipeline_root: str | Path,
    temperatures: list[float] | None = None,
    split: str = "test",
    mirror_uri: str | None = None,
    params: dict[str, Any] | None = None,
    pipeline: str = "voxelflex_pipeline",
) -> LocalRun:
    """Run a pipeline with `kfp.local`'s SubprocessRunner; returns where everything is. The
    main pipeline takes its parameters from the config; the others from `params` (plus the
    config's settings)."""
    from kfp import local

    from voxelflex.pipelines.compile import PIPELINES

    if pipeline not in PIPELINES:
        raise ConfigError(f"--pipeline must be one of {sorted(PIPELINES)}, not {pipeline!r}")

    root = Path(pipeline_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    before = set(root.iterdir())
    if pipeline == "voxelflex_pipeline":
        args = {**pipeline_arguments(cfg, temperatures, split, mirror_uri), **(params or {})}
    else:
        args = {"settings": settings_of(cfg), **(params or {})}
    # components run as subprocesses: they get the config's storage options the way a pod
    # gets its secret, from the environment (fsspec reads FSSPEC_<PROTOCOL>_<OPTION>)
    for protocol, opts in cfg.input.storage_options.items():
        for key, value in opts.items():
            os.environ[f"FSSPEC_{protocol.upper()}_{key.upper()}"] = str(value)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root))
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        # image, GPU and resource settings are for the cluster; locally they are expected no-ops
        warnings.filterwarnings("ignore", message=".*(non-Python base image|have no effect).*")
        try:
            _without_retries(PIPELINES[pipeline], Path(tmp))(**args)
        except RuntimeError as exc:  # kfp.local: "Pipeline ... finished with status FAILURE"
            raise VoxelFlexError(
                f"local pipeline run failed ({exc}); the failing task's log is above"
            ) from None
    (run_dir,) = set(root.iterdir()) - before
    return LocalRun(run_dir, _collect(run_dir))
