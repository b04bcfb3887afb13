"""`pipeline run --local --runner docker`: each step in the project's image, through
kfp.local's DockerRunner, as on a cluster's pods: the image's own non-root user, only
the pipeline root and the pipeline's own paths visible, no host Python.

What a container needs that a subprocess had for free, given here and nowhere else:
- the image, built from this checkout (its code digest must be the checkout's: a step
  refuses other code anyway, this says so before the first step, with the fix);
- the local files the pipeline's parameters name, mounted at their absolute paths (read-only,
  as inputs are on a cluster, except the folders a pipeline writes outside its artifacts,
  such as a shared embedding cache), relative paths made absolute;
- folders it writes (the pipeline root, those folders) writable by the image's user;
- object-store settings from the environment (AWS_*, FSSPEC_*), the host's network so a
  store on loopback is reachable, and GPU steps in the CPU image where no CUDA image is
  built here (every step then runs on the CPU, as the subprocess runner does);
- each task's CPU and memory limits, as its pod has them (a step that outgrows its memory
  limit is killed here as on a cluster, and sizes its threads and buffers to the limits).
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipekit.errors import PipelineError
from pipekit.memory import gib, physical_memory
from pipekit.pipeline.images import CPU_IMAGE, GPU_IMAGE

log = logging.getLogger(__name__)

IMAGE_UID = 1000  # the `pipelines` user of images/Dockerfile and images/Dockerfile.cuda
# passed into every container from this process's environment (a pod gets them from its
# secret and spec): object-store credentials and endpoint, fsspec options, test fault points
PASSED_ENV_PREFIXES = ("AWS_", "FSSPEC_", "PIPEKIT_", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
LABEL = "org.lab-pipelines.kfp-local"


def _docker(*args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=300)
    except FileNotFoundError:
        raise PipelineError(
            "--runner docker needs Docker (the docker command is not installed); "
            "docs/platform.md: images"
        ) from None


def check_image(image: str = CPU_IMAGE) -> None:
    """The image exists here and holds this checkout's code; else one line with the fix."""
    from pipekit.release import code_digest

    if _docker("info").returncode != 0:
        raise PipelineError("--runner docker: no Docker daemon answers (start dockerd)")
    if _docker("image", "inspect", image).returncode != 0:
        raise PipelineError(f"--runner docker: image {image} is not built here; run `make images`")
    out = _docker("run", "--rm", image, "python", "-m", "pipekit.release", "digest")
    theirs, ours = out.stdout.strip(), code_digest()
    if out.returncode != 0 or theirs != ours:
        raise PipelineError(
            f"--runner docker: image {image} holds code {theirs or '?'}, this checkout is "
            f"{ours}; run `make images` to build it from this checkout"
        )


def image_for(image: str) -> str:
    """The image a step runs in here: the CUDA image only where it was built on this machine."""
    if image == GPU_IMAGE and _docker("image", "inspect", GPU_IMAGE).returncode != 0:
        return CPU_IMAGE
    return image


def _is_path(value: str) -> bool:
    return "://" not in value or value.startswith("file://")


def _absolute(value: str) -> Path:
    return Path(value.removeprefix("file://")).resolve()


def host_paths(
    args: Mapping[str, Any], writes: Iterable[str]
) -> tuple[dict[str, Any], list[tuple[Path, bool]]]:
    """The pipeline's arguments with local paths made absolute, and what to mount: (folder or
    file, writable). A string argument (or list item) naming an existing local path is an
    input, mounted read-only; an argument in `writes` (a folder or file the pipeline writes
    outside its artifacts) gets its folder mounted writable, created if missing."""
    out: dict[str, Any] = dict(args)
    mounts: list[tuple[Path, bool]] = []
    writes = set(writes)

    def convert(name: str, value: Any) -> Any:
        if isinstance(value, list):
            return [convert(name, v) for v in value]
        if not isinstance(value, str) or not value or not _is_path(value):
            return value
        path = _absolute(value)
        if name in writes:
            folder = path if path.is_dir() or not path.suffix else path.parent
            folder.mkdir(parents=True, exist_ok=True)
            mounts.append((folder, True))
            return str(path)
        if path.exists():
            mounts.append((path, False))
            return str(path)
        return value  # a hub name, a split name: not a path here

    for name, value in args.items():
        out[name] = convert(name, value)
    return out, _outermost(mounts)


def _outermost(mounts: list[tuple[Path, bool]]) -> list[tuple[Path, bool]]:
    """One mount per place: a read-only path inside a writable folder is already there."""
    writable = [p for p, w in mounts if w]
    keep: dict[Path, bool] = {}
    for path, rw in mounts:
        if not rw and any(path == w or w in path.parents for w in writable):
            continue
        keep[path] = keep.get(path, False) or rw
    return sorted(keep.items())


def writable_by_image(folder: Path) -> None:
    """Let the image's user write `folder` and what is in it (an earlier subprocess run may
    have left files there): as root (CI) by handing them over, as their owner by opening
    them to others; anyone else is told what to run."""
    entries = [folder, *folder.rglob("*")]
    theirs = [p for p in entries if p.stat().st_uid != IMAGE_UID and not p.stat().st_mode & 0o002]
    if not theirs:
        return
    if os.geteuid() == 0:
        for path in theirs:
            os.chown(path, IMAGE_UID, -1, follow_symlinks=False)
        return
    mine = [p for p in theirs if p.stat().st_uid == os.geteuid()]
    for path in mine:
        path.chmod(path.stat().st_mode | (0o007 if path.is_dir() else 0o006))
    others = [p for p in theirs if p not in mine]
    if others:
        raise PipelineError(
            f"{others[0]} is not writable by the image's user (uid {IMAGE_UID}); "
            f"run `sudo chown -R {IMAGE_UID} {folder}` or choose another folder"
        )


def readable_by_image(path: Path, limit: int = 100_000) -> None:
    """A read-only input (its first `limit` entries) can be read by the image's user: files
    readable, folders readable and enterable; else one line naming it, before any step."""
    if os.geteuid() == IMAGE_UID:
        return
    entries = [path] if path.is_file() else [path, *path.rglob("*")]
    for entry in entries[:limit]:
        st = entry.stat()
        need = 0o5 if entry.is_dir() else 0o4  # r-x for a folder, r-- for a file
        if st.st_mode & need != need and not (
            st.st_uid == IMAGE_UID and (st.st_mode >> 6) & need == need
        ):
            raise PipelineError(
                f"{entry} is not readable by the image's user (uid {IMAGE_UID}), which runs "
                f"each step under --runner docker; run `chmod -R a+rX {path}`"
            )


def passed_env(storage_env: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.startswith(PASSED_ENV_PREFIXES)}
    return {**env, **storage_env}


def runner(root: Path, mounts: list[tuple[Path, bool]], env: Mapping[str, str]) -> Any:
    """kfp.local's DockerRunner for these mounts and environment (the pipeline root is
    mounted by kfp.local itself, at its own path)."""
    from docker.types import Mount
    from kfp import local

    writable_by_image(root)
    for path, rw in mounts:
        if rw:
            writable_by_image(path)
        else:
            readable_by_image(path)
    return local.DockerRunner(
        mounts=[
            Mount(target=str(p), source=str(p), type="bind", read_only=not rw) for p, rw in mounts
        ],
        environment=dict(env),
        network_mode="host",  # a store or server on the host's loopback (tests, port-forwards)
        labels={LABEL: str(root)},
    )


@dataclass(frozen=True)
class PodLimits:
    """A task's CPU and memory limits (its pod's `resources.limits`), and for a GPU step the
    memory-backed /dev/shm its pod mounts (`tasks.on_gpu`), as a container's."""

    cpus: float | None  # cores
    memory: int | None  # bytes
    gpu: bool = False

    @classmethod
    def of(cls, container: Any) -> PodLimits:
        """From the executor's container spec (KFP writes cores and GB beside the strings)."""
        res = container.resources
        gpu = bool(res.accelerator.resource_count or res.accelerator.count)
        return cls(res.cpu_limit or None, round(res.memory_limit * 1e9) or None, gpu)

    def docker_args(self) -> dict[str, int]:
        """`docker run --cpus/--memory` (swap off, as on a node): never above this machine,
        where Docker refuses more CPUs than it has and memory above it is no limit at all.
        A GPU step's /dev/shm as its pod's (Docker's own is 64 MiB: DataLoader workers'
        batches outgrow it), within the memory limit its pages count against."""
        from pipekit.pipeline.tasks import SHM_GIB

        args = {}
        machine = physical_memory()
        memory = min(self.memory or machine, machine)
        if self.cpus:
            args["nano_cpus"] = int(min(self.cpus, os.cpu_count() or 1) * 1e9)
        if self.memory:
            args["mem_limit"] = args["memswap_limit"] = memory
        if self.gpu:
            args["shm_size"] = min(SHM_GIB * 2**30, memory)
        return args


# the limits of the task kfp.local is starting: its container spec is read (for its env)
# just before the container starts, one task at a time
_next_limits: list[PodLimits] = []


def _run_container(client: Any, image: str, command: list[str], volumes: Any, **args: Any) -> int:
    """One step's container, under its task's CPU and memory limits, its log streamed, its
    exit code returned. kfp.local's own start has the container removed as it exits and,
    when the removal wins the race with reading the exit code, reports the step as
    succeeded whatever it returned; here the container stays until its exit code is read."""
    limits = _next_limits.pop() if _next_limits else PodLimits(None, None)
    container = client.containers.run(
        image=image, command=command, volumes=volumes, detach=True, **args, **limits.docker_args()
    )
    try:
        for line in container.logs(stream=True, follow=True):
            print(line.decode(errors="replace"), end="")
        code = int(container.wait()["StatusCode"])
        container.reload()
        if container.attrs["State"].get("OOMKilled"):
            print(
                f"ERROR: the step was killed at its memory limit ({gib(limits.memory or 0)}, "
                "its task's set_memory_limit, as its pod would be on a cluster)"
            )
        return code
    finally:
        container.remove(force=True)


@contextmanager
def as_on_pods() -> Iterator[None]:
    """kfp.local's DockerRunner with `_run_container` in place of its container start, each
    task's limits read from its container spec on the way."""
    from kfp.local import docker_task_handler, task_dispatcher

    original_run = docker_task_handler.run_docker_container
    original_env = task_dispatcher._extract_container_env_vars

    def env_and_limits(container: Any) -> dict[str, str]:
        _next_limits[:] = [PodLimits.of(container)]
        return original_env(container)

    docker_task_handler.run_docker_container = _run_container
    task_dispatcher._extract_container_env_vars = env_and_limits
    try:
        yield
    finally:
        docker_task_handler.run_docker_container = original_run
        task_dispatcher._extract_container_env_vars = original_env
        _next_limits.clear()
