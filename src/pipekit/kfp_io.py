"""Between KFP artifacts and a step's `run(cfg)`: the little a pipeline component needs.

A component receives artifacts (`uri`: `/…` under `kfp.local`, `s3://…` or `minio://…` on a
cluster) and a `settings` mapping of config sections. These helpers check the settings, find
where an artifact lives, copy the few small files a step expects beside its outputs, and
publish headline numbers to a Metrics artifact.

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

from pipekit.errors import ConfigError
from pipekit.uri import ensure_dir, is_local, join_uri, local_path, uri_exists


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


def component_settings(
    settings: Mapping[str, Any],
    owned: Iterable[str],
    overrides: Mapping[str, Any] | None = None,
    run_dir: str | None = None,
) -> dict[str, Any]:
    """The config sections for one component: `settings`, then `overrides` (the component's
    typed parameters, `{"training.batch_size": 64}`). Refuses settings for the `owned`
    sections (the pipeline's parameters and artifacts say where data lives) and an image
    that runs other code than the pipeline was compiled from. With `run_dir` (the step's
    output folder), the run it belongs to names the step's metrics group."""
    from pipekit.release import DIGEST_ENV, check_image

    check_image(os.environ.get(DIGEST_ENV))
    clash = sorted(set(settings) & set(owned))
    if clash:
        raise ConfigError(
            f"pipeline settings may not set {clash}: the pipeline's parameters and artifacts "
            "say where inputs and outputs live"
        )
    values = copy.deepcopy(dict(settings))
    for dotted, value in (overrides or {}).items():
        section, key = dotted.split(".")
        values.setdefault(section, {})[key] = value
    if run_dir is not None:
        # KFP puts artifacts at <root>/<run>/<task>/<output>: the run folder names the run,
        # which groups the step's metrics in a Pushgateway unless settings name it
        monitoring = values.setdefault("monitoring", {})
        if not monitoring.get("run_id"):
            run_dir = run_dir.rstrip("/")
            monitoring["run_id"] = posixpath.basename(posixpath.dirname(posixpath.dirname(run_dir)))
    return values


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


def same_task(artifact: ArtifactLike) -> None:
    """Name this attempt by the task's output `artifact` (its URI is the same for every
    attempt of a task), so a retry takes over at once the run folder lease a killed attempt
    of the same task still holds (`pipekit.runlock`), instead of waiting for it to expire."""
    from pipekit.runlock import OWNER_ENV

    os.environ[OWNER_ENV] = artifact.uri


def work_location(artifact: ArtifactLike) -> str:
    """Where a long step (training, a store it builds) keeps its work while it runs, so that
    a retry resumes from it. Under the KFP launcher an output's local folder is empty on every
    attempt and uploaded only after success, so the work goes straight to the artifact's
    object-store URI (the same for every attempt of a task) and `fetch_folder` copies it into
    the local folder once the step is done. Where the artifact's folder is the artifact
    (kfp.local), it is that folder, which survives a failed attempt. Either way this attempt
    is named as its task's (`same_task`)."""
    same_task(artifact)
    where = location(artifact)
    remote = fsspec_uri(artifact.uri)
    if is_local(where) and not is_local(remote):
        return remote.rstrip("/")
    return where.rstrip("/")


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
