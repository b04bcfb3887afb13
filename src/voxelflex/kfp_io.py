"""Between KFP artifacts and a step's `run(cfg)`: the little a pipeline component needs.

A component receives artifacts (`uri`: `/…` under `kfp.local`, `s3://…` or `minio://…` on a
cluster) and a `settings` mapping of config sections. These helpers turn them into a
validated `Config` whose run folder is the component's output artifact, copy the few small
files a step expects beside its outputs, and publish headline numbers to a Metrics artifact.

Where an artifact lives: the KFP backend's launcher downloads input artifacts to a local
`.path` and uploads output artifacts from it after the step, so where that local folder is
there, it is used (writing straight to the URI would then be overwritten by the upload).
Where it is not, the artifact is opened by its URI through fsspec; nothing assumes it.
"""

from __future__ import annotations

import copy
import math
import os
import posixpath
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol

from fsspec.core import url_to_fs

from voxelflex.config import Config, config_from_dict
from voxelflex.data.uri import (
    apply_storage_options,
    ensure_dir,
    is_local,
    join_uri,
    local_path,
    uri_exists,
)
from voxelflex.errors import ConfigError
from voxelflex.logging_setup import setup_logging
from voxelflex.paths import RunPaths
from voxelflex.progress import set_progress

# The pipeline owns where data and outputs live; a user's settings may not move them.
OWNED_SECTIONS = ("input", "data", "output")


class MetricsArtifact(Protocol):
    def log_metric(self, metric: str, value: float) -> None: ...


class ArtifactLike(Protocol):
    uri: str

    @property
    def path(self) -> str: ...


Location = ArtifactLike | str


def fsspec_uri(uri: str) -> str:
    """An artifact URI fsspec can open. KFP names MinIO objects `minio://bucket/key`; MinIO
    speaks S3, so they open as `s3://bucket/key` with the endpoint from AWS_ENDPOINT_URL."""
    if uri.startswith("minio://"):
        return "s3://" + uri[len("minio://") :]
    return uri


def location(artifact: Location) -> str:
    """Where to read or write an artifact (or a URI string): the local `.path` when the
    backend provides it (the path, or for an output its parent folder, exists), else the
    fsspec form of `.uri`."""
    if isinstance(artifact, str):
        return fsspec_uri(artifact)
    path = getattr(artifact, "path", None)
    if path and (os.path.exists(path) or os.path.isdir(os.path.dirname(path.rstrip("/")))):
        return path
    return fsspec_uri(artifact.uri)


def component_config(
    settings: Mapping[str, Any],
    run_dir: Location | None = None,
    processed_dir: Location | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Config for one component: defaults, then `settings` (config sections), then
    `overrides` (`{"input.voxel_file": uri, "training.batch_size": 64}`: the component's typed
    parameters), then the artifact locations.

    `run_dir` (the component's output artifact) becomes `output.base_dir/output.run_name`;
    `processed_dir` (the preprocess artifact) holds `master_samples.parquet`. Logging goes to
    the console and the run's log file (console only for a step without a run folder).
    """
    from voxelflex.release import DIGEST_ENV, check_image

    check_image(os.environ.get(DIGEST_ENV))  # this image runs the code the run was compiled from
    owned = sorted(set(settings) & set(OWNED_SECTIONS))
    if owned:
        raise ConfigError(
            f"pipeline settings may not set {owned}: the pipeline's parameters and artifacts "
            "say where inputs and outputs live"
        )
    values = copy.deepcopy(dict(settings))
    for dotted, value in (overrides or {}).items():
        section, key = dotted.split(".")
        values.setdefault(section, {})[key] = value
    if run_dir is not None:
        run_dir = location(run_dir).rstrip("/")
        # KFP puts artifacts at <root>/<run>/<task>/<output>: the run folder names the run,
        # which groups the step's metrics in a Pushgateway unless settings name it
        monitoring = values.setdefault("monitoring", {})
        if not monitoring.get("run_id"):
            monitoring["run_id"] = posixpath.basename(posixpath.dirname(posixpath.dirname(run_dir)))
        values["data"] = {"processed_dir": location(processed_dir) if processed_dir else run_dir}
        values["output"] = {
            "base_dir": posixpath.dirname(run_dir),
            "run_name": posixpath.basename(run_dir),
        }
    cfg = config_from_dict(values, origin="pipeline settings")
    apply_storage_options(cfg.input.storage_options)
    log_file = RunPaths.from_config(cfg).log_file if run_dir is not None else None
    setup_logging(cfg.logging.level, log_file)
    set_progress(cfg.logging.show_progress)
    return cfg


def training_overrides(
    voxel_file: str, architecture: str, num_epochs: int, batch_size: int, learning_rate: float
) -> dict[str, Any]:
    """The training components' typed parameters as config overrides."""
    return {
        "input.voxel_file": voxel_file,
        "model.architecture": architecture,
        "training.num_epochs": num_epochs,
        "training.batch_size": batch_size,
        "training.learning_rate": learning_rate,
    }


def best_model(model: Location) -> str:
    """The checkpoint inside a Model artifact written by the train component (a run folder)."""
    return RunPaths(run_dir=location(model).rstrip("/"), processed_dir="").best_model


def copy_uri(src: Location, dst: Location) -> None:
    """Copy one file between any two artifacts or URIs (e.g. a report into a Markdown
    artifact)."""
    src_fs, src_path = url_to_fs(location(src))
    dst = location(dst)
    ensure_dir(posixpath.dirname(dst))
    dst_fs, dst_path = url_to_fs(dst)
    with src_fs.open(src_path, "rb") as fin, dst_fs.open(dst_path, "wb") as fout:
        fout.write(fin.read())


def copy_files(src_dir: Location, dst_dir: Location, names: Iterable[str]) -> list[str]:
    """Copy the named files (relative paths) that exist under `src_dir` into `dst_dir`;
    returns the names copied. It puts the small files a step reads beside its outputs
    (history, scaling, metrics), never voxels."""
    copied = []
    for name in names:
        src = join_uri(location(src_dir), name)
        if uri_exists(src):
            copy_uri(src, join_uri(location(dst_dir), name))
            copied.append(name)
    return copied


def fetch_folder(uri: str, artifact: Location) -> None:
    """Copy what a remote writer (a TrainJob's nodes) put at `uri` into the artifact's local
    path, where the launcher uploads outputs from; nothing to do when they are one place."""
    where = location(artifact)
    if not is_local(where) or where.rstrip("/") == fsspec_uri(uri).rstrip("/"):
        return
    fs, path = url_to_fs(fsspec_uri(uri))
    os.makedirs(local_path(where), exist_ok=True)
    fs.get(path.rstrip("/") + "/", local_path(where).rstrip("/") + "/", recursive=True)


@contextmanager
def local_folder(artifact: Location) -> Iterator[str]:
    """A local folder for a step that writes with plain file APIs (h5py, biotite): the
    artifact's own location when local, else a temporary folder uploaded at the end."""
    where = location(artifact)
    if is_local(where):
        os.makedirs(local_path(where), exist_ok=True)
        yield local_path(where)
        return
    with tempfile.TemporaryDirectory() as tmp:
        yield tmp
        fs, path = url_to_fs(where)
        fs.put(tmp.rstrip("/") + "/", path, recursive=True)


def log_metrics(artifact: MetricsArtifact, values: Mapping[str, Any]) -> dict[str, float]:
    """Log each finite number under its name (the Kubeflow UI shows them); skip undefined
    ones (a constant prediction has no r) rather than writing NaN."""
    logged = {}
    for name, value in values.items():
        is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if is_number and math.isfinite(value):
            artifact.log_metric(name, float(value))
            logged[name] = float(value)
    return logged
