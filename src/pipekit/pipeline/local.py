"""Run a whole pipeline on this machine through `kfp.local` (no cluster).

By default each component runs as a subprocess of the current Python (which must have the
project installed); with `runner="docker"` each runs in the project's image, as on a
cluster's pods (`pipekit.pipeline.docker_local`). Artifacts land under a local pipeline
root. Kubernetes settings are ignored.
"""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import yaml

from pipekit.errors import PipelineError
from pipekit.logging_setup import verbose
from pipekit.uri import local_path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LocalRun:
    run_dir: Path
    # task -> output name -> {"uri": ..., "metadata": {...}} (metrics live in metadata)
    artifacts: dict[str, dict[str, dict[str, Any]]]
    # task -> the name the pipeline shows for it (`set_display_name`), where it gave one
    display_names: dict[str, str] = field(default_factory=dict)


def _display_names(func: Any) -> dict[str, str]:
    """Task -> its display name, in every DAG of the pipeline (loops' and branches' too): the
    run's folders are named by task (`train-model-3`), the UI by what it does (`train clf`)."""
    spec = getattr(func, "pipeline_spec", None)
    if spec is None:
        return {}
    dags = [spec.root.dag, *(c.dag for c in spec.components.values() if c.HasField("dag"))]
    return {k: t.task_info.name for d in dags for k, t in d.tasks.items() if t.task_info.name != k}


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


RUNNERS = ("subprocess", "docker")


def _for_this_machine(node: Any, images: dict[str, str] | None = None) -> None:
    """No retry policies, metrics on any free port instead of the pods' fixed one (a second
    local run, or a test beside a demo, would find it taken), and each step's image as this
    machine has it (`images`: compiled -> here)."""
    from pipekit.monitoring import ENV_PORT

    images = images or {}
    if isinstance(node, dict):
        node.pop("retryPolicy", None)
        if node.get("name") == ENV_PORT and "value" in node:
            node["value"] = "0"
        if isinstance(node.get("image"), str) and node["image"] in images:
            node["image"] = images[node["image"]]
        for value in node.values():
            _for_this_machine(value, images)
    elif isinstance(node, list):
        for value in node:
            _for_this_machine(value, images)


def _without_retries(
    func: Any, workdir: Path, images: dict[str, str] | None = None, digest: str | None = None
) -> Any:
    """The pipeline as compiled for the cluster, minus its retry policies (kfp.local honours
    them, and a mistake here should fail in seconds, not after two 60 s and 120 s backoffs
    meant for a node lost on a cluster) and with metrics on a free port. With `digest`,
    stamped as `submit` stamps it: a step whose image holds other code refuses to run."""
    from kfp import compiler, components

    from pipekit.pipeline.submit import stamp

    path = workdir / "pipeline.yaml"
    compiler.Compiler().compile(func, str(path))
    spec = next(yaml.safe_load_all(path.read_text()))  # the platform (Kubernetes) part is unused
    _for_this_machine(spec, images or {})
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    if digest:
        stamp(str(path), digest)
    return components.load_component_from_file(str(path))


def run_local(
    func: Any,
    args: dict[str, Any],
    pipeline_root: str | Path,
    storage_options: dict[str, dict[str, Any]] | None = None,
    runner: str = "subprocess",
    writes: tuple[str, ...] = (),
) -> LocalRun:
    """Run the pipeline `func` with `args` through `kfp.local`, each step a subprocess or
    (`runner="docker"`) a container of the project's image; `writes` names the parameters
    whose paths the pipeline writes outside its artifacts. Returns where everything is."""
    from kfp import local

    if runner not in RUNNERS:
        raise PipelineError(f"--runner must be one of {RUNNERS}, not {runner!r}")
    root = Path(pipeline_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    before = set(root.iterdir())
    # components get the config's storage options the way a pod gets its secret, from the
    # environment (fsspec reads FSSPEC_<PROTOCOL>_<OPTION>)
    storage_env = {
        f"FSSPEC_{protocol.upper()}_{key.upper()}": str(value)
        for protocol, opts in (storage_options or {}).items()
        for key, value in opts.items()
    }
    images: dict[str, str] = {}
    digest = None
    exit_codes: AbstractContextManager[Any] = nullcontext()
    if runner == "docker":
        from pipekit.pipeline import docker_local
        from pipekit.pipeline.images import CPU_IMAGE, GPU_IMAGE
        from pipekit.release import code_digest

        docker_local.check_image(CPU_IMAGE)
        images = {GPU_IMAGE: docker_local.image_for(GPU_IMAGE)}
        args, mounts = docker_local.host_paths(args, writes)
        env = docker_local.passed_env(storage_env)
        kfp_runner: Any = docker_local.runner(root, mounts, env)
        digest = code_digest()
        exit_codes = docker_local.as_on_pods()
    else:
        os.environ.update(storage_env)
        kfp_runner = local.SubprocessRunner(use_venv=False)
    local.init(runner=kfp_runner, pipeline_root=str(root))
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings(), exit_codes:
        # image, GPU and resource settings are for the cluster; kfp.local warns they do nothing
        # (under --runner docker the CPU and memory limits do apply: docker_local.as_on_pods)
        warnings.filterwarnings("ignore", message=".*(non-Python base image|have no effect).*")
        quiet = not verbose()  # -v shows it all
        try:
            with redirect_stdout(_WithoutExecutorNoise(sys.stdout)) if quiet else nullcontext():
                _without_retries(func, Path(tmp), images, digest)(**args)
        except RuntimeError as exc:  # kfp.local: "Pipeline ... finished with status FAILURE"
            raise PipelineError(
                f"local pipeline run failed ({exc}); the failing task's log is above"
            ) from None
    (run_dir,) = set(root.iterdir()) - before
    return LocalRun(run_dir, _collect(run_dir), _display_names(func))


class _WithoutExecutorNoise(io.TextIOBase):
    """The console of a local run: each step's own output passes; the KFP executor's
    bookkeeping in each step's log (where it found the component, the whole executor input
    as JSON, where it wrote its output) and kfp.local's listing of each task's artifacts
    (their Python reprs; the run's summary lists them once at the end) are left out. `-v`
    shows everything."""

    NOISE = ("Looking for component", "Loading KFP component", "Wrote executor output file")

    def __init__(self, out: TextIO) -> None:
        self.out, self.pending = out, ""
        self.closing: str | None = None  # the JSON's last line, while inside it
        self.listing = False  # inside a "Task 'x' outputs:" block (its lines are indented)

    def write(self, text: str) -> int:
        self.pending += text
        while "\n" in self.pending:
            line, self.pending = self.pending.split("\n", 1)
            self._line(line)
        return len(text)

    def _line(self, line: str) -> None:
        if self.listing:
            if line.startswith(" "):
                return
            self.listing = False
        if " - INFO - Task " in line and line.endswith(" outputs:"):
            self.listing = True
            return
        if self.closing == "":  # the line after "Got executor_input:" opens the JSON
            self.closing = line[: len(line) - len(line.lstrip())] + "}"
            return
        if self.closing is not None:
            if line.rstrip() == self.closing:
                self.closing = None
            return
        if "Got executor_input:" in line:
            self.closing = ""
            return
        if not any(n in line for n in self.NOISE):
            self.out.write(line + "\n")

    def flush(self) -> None:
        self.out.flush()


def publish_files(
    run: LocalRun, destination: Callable[[str, str], str | None], log_file: str
) -> None:
    """Copy every file of the run's folder artifacts to `destination(task, relative path)`
    (a URI; None leaves the file out), so the step commands find them after a local
    pipeline run; each step's log is appended to `log_file`."""
    from fsspec.core import url_to_fs

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
                target = destination(task, rel)
                if target is None:
                    continue
                fs, dst = url_to_fs(target)
                fs.makedirs(dst.rsplit("/", 1)[0], exist_ok=True)
                fs.put_file(str(file), dst)
    if logs:
        fs, dst = url_to_fs(log_file)
        fs.makedirs(dst.rsplit("/", 1)[0], exist_ok=True)
        with fs.open(dst, "w") as fh:
            fh.write("\n".join(logs))
