"""One task of a compiled pipeline, run the way the KFP backend's launcher runs it, around a
real container of the project's image (kfp.local's runners hide all of this):

1. input artifacts are downloaded from object storage, before the step starts, to the local
   paths the KFP SDK maps their URIs to (`s3://b/k` -> `/s3/b/k`); here they are mounted
   read-only, so a step that writes into an input fails instead of losing the write;
2. each output's local parent folder is created empty, the step runs (the executor's own
   image, command, arguments and environment, as the image's user, under its pod's CPU and
   memory limits as `--runner docker` applies them), and each output's local path is
   uploaded to its URI only after the step exits 0;
3. a retry is a new container whose output folders are empty again (the same URIs: the
   driver decided them once for the task).

The object store is a real S3 API (moto's server) on the host's loopback, which the
container reaches through the host's network.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipekit.faults import HOLD_ENV, HOLD_MARK
from pipekit.pipeline.images import CPU_IMAGE
from pipekit.release import DIGEST_ENV, code_digest

S3_MOUNT = "/s3/"  # where the KFP SDK maps s3:// artifacts (kfp.dsl.types.artifact_types)
OUTPUT_FILE = "/tmp/kfp_outputs/output_metadata.json"
IMAGE_UID = 1000


def compiled_spec(system: str, pipeline: str, folder: Path) -> dict[str, Any]:
    """The pipeline compiled now from this checkout (what `pipeline submit` would send)."""
    from kfp import compiler

    from lab_pipelines import pipelines_of

    path = folder / f"{pipeline}.yaml"
    if not path.exists():
        compiler.Compiler().compile(pipelines_of(system)[pipeline], str(path))
    return next(yaml.safe_load_all(path.read_text()))


@dataclass
class Attempt:
    name: str  # the container
    exit_code: int | None = None
    logs: str = ""
    limits: dict[str, int] = field(default_factory=dict)  # as Docker ran it (HostConfig)
    output_metadata: dict[str, Any] = field(default_factory=dict)

    def metrics(self, output: str = "metrics") -> dict[str, Any]:
        arts = self.output_metadata.get("artifacts", {}).get(output, {}).get("artifacts", [])
        return arts[0].get("metadata", {}) if arts else {}


@dataclass
class Task:
    """Task `task` of a run whose pipeline root is `root` (`s3://bucket/prefix`), executing
    component `component` of the compiled `spec` with `parameters` and input artifacts
    `inputs` (name -> URI)."""

    spec: dict[str, Any]
    component: str
    root: str
    task: str
    parameters: dict[str, Any]
    inputs: dict[str, str | list[str]]
    env: dict[str, str]
    workdir: Path
    image: str = CPU_IMAGE
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def _component(self) -> dict[str, Any]:
        return self.spec["components"][f"comp-{self.component}"]

    @property
    def _container(self) -> dict[str, Any]:
        label = self._component["executorLabel"]
        return self.spec["deploymentSpec"]["executors"][label]["container"]

    def output_uri(self, name: str) -> str:
        return f"{self.root.rstrip('/')}/{self.task}/{name}"

    @property
    def outputs(self) -> dict[str, str]:
        defs = self._component.get("outputDefinitions", {}).get("artifacts", {})
        return {name: self.output_uri(name) for name in defs}

    def executor_input(self) -> dict[str, Any]:
        """What the driver hands the launcher: parameter values, artifacts by URI."""
        comp = self._component
        in_defs = comp.get("inputDefinitions", {}).get("artifacts", {})
        out_defs = comp.get("outputDefinitions", {})

        def artifact(name: str, uri: str | list[str], definition: dict[str, Any]) -> dict:
            kind = definition["artifactType"]
            uris = uri if isinstance(uri, list) else [uri]  # a list: a collected fan-out
            return {
                "artifacts": [{"name": name, "type": kind, "uri": u, "metadata": {}} for u in uris]
            }

        missing = set(in_defs) - set(self.inputs)
        optional = {n for n in missing if in_defs[n].get("isOptional")}
        assert missing == optional, f"inputs {sorted(missing - optional)} not given"
        return {
            "inputs": {
                "parameterValues": self.parameters,
                "artifacts": {n: artifact(n, u, in_defs[n]) for n, u in self.inputs.items()},
            },
            "outputs": {
                "artifacts": {
                    n: artifact(n, self.output_uri(n), d)
                    for n, d in out_defs.get("artifacts", {}).items()
                },
                "parameters": {
                    n: {"outputFile": f"/tmp/kfp_outputs/{n}"}
                    for n in out_defs.get("parameters", {})
                },
                "outputFile": OUTPUT_FILE,
            },
        }

    def _command(self) -> list[str]:
        payload = json.dumps(self.executor_input())
        cmd = [*self._container["command"], *self._container.get("args", [])]
        cmd = [payload if part == "{{$}}" else part for part in cmd]
        assert not any("{{$" in part for part in cmd), "a placeholder the launcher would fill"
        return cmd

    def _env(self, extra: dict[str, str]) -> dict[str, str]:
        env = {e["name"]: e["value"] for e in self._container.get("env", []) if "value" in e}
        env["PIPEKIT_METRICS_PORT"] = "0"  # the host's network: a fixed port may be taken
        env[DIGEST_ENV] = code_digest()  # as `pipeline submit` stamps it
        return {**env, **self.env, **extra}

    def start(self, hold_at: str | None = None) -> Attempt:
        """A new attempt: download the inputs, start a fresh container with empty output
        folders; `hold_at` stops the step at that crash point (`pipekit.faults`)."""
        n = len(self.attempts) + 1
        base = self.workdir / f"{self.task}-attempt{n}"
        inputs, outputs, meta = base / "inputs", base / "s3", base / "kfp_outputs"
        for folder in (inputs, outputs, meta):
            folder.mkdir(parents=True)
        fs = self._store()
        mounts = []
        uris = [u for v in self.inputs.values() for u in (v if isinstance(v, list) else [v])]
        for uri in uris:
            key = uri.removeprefix("s3://")
            local = inputs / key
            local.parent.mkdir(parents=True, exist_ok=True)
            if fs.isdir(key):
                fs.get(key.rstrip("/") + "/", str(local) + "/", recursive=True)
            else:
                fs.get_file(key, str(local))
            mounts += ["-v", f"{local}:{S3_MOUNT}{key}:ro"]
        for uri in self.outputs.values():
            (outputs / uri.removeprefix("s3://")).parent.mkdir(parents=True, exist_ok=True)
        for folder in (outputs, meta):
            hand_over(folder)
        env = self._env({HOLD_ENV: hold_at} if hold_at else {})
        volumes = ["-v", f"{outputs}:{S3_MOUNT.rstrip('/')}", "-v", f"{meta}:/tmp/kfp_outputs"]
        limits = pod_limits(self._container)
        name = start(
            self.image, self._command(), env, [*limits, *volumes, *mounts], f"launcher-{self.task}"
        )
        attempt = Attempt(name)
        self.attempts.append(attempt)
        return attempt

    def wait_for_hold(self, attempt: Attempt, timeout: float = 300) -> None:
        wait_for_hold(attempt.name, timeout)

    def kill(self, attempt: Attempt) -> None:
        """`docker kill`: SIGKILL to the whole container, as a node loss or OOM kill does."""
        kill(attempt.name)
        self._finish(attempt, upload=False)

    def wait(self, attempt: Attempt, timeout: float = 600) -> Attempt:
        """Wait for the step; upload its outputs only if it exited 0 (the launcher's rule)."""
        attempt.exit_code = wait(attempt.name, timeout)
        self._finish(attempt, upload=attempt.exit_code == 0)
        return attempt

    def run(self, hold_at: str | None = None) -> Attempt:
        return self.wait(self.start(hold_at))

    def returned(self, attempt: Attempt, name: str = "Output") -> Any:
        """The value the attempt's component returned (its output parameter `name`, which
        the executor writes into its output metadata)."""
        return attempt.output_metadata["parameterValues"][name]

    def _store(self) -> Any:
        import s3fs

        return s3fs.S3FileSystem(
            key=self.env["AWS_ACCESS_KEY_ID"],
            secret=self.env["AWS_SECRET_ACCESS_KEY"],
            endpoint_url=self.env["AWS_ENDPOINT_URL"],
            skip_instance_cache=True,
        )

    def _finish(self, attempt: Attempt, upload: bool) -> None:
        attempt.limits = applied_limits(attempt.name)
        attempt.logs = finish(attempt.name)
        base = self.workdir / f"{self.task}-attempt{self.attempts.index(attempt) + 1}"
        meta = base / "kfp_outputs" / Path(OUTPUT_FILE).name
        if meta.exists():
            attempt.output_metadata = json.loads(meta.read_text())
        if not upload:
            return
        fs = self._store()
        for uri in self.outputs.values():
            key = uri.removeprefix("s3://")
            local = base / "s3" / key
            if local.is_dir():
                for file in sorted(p for p in local.rglob("*") if p.is_file()):
                    fs.put_file(str(file), f"{key}/{file.relative_to(local).as_posix()}")
            elif local.is_file():
                fs.put_file(str(local), key)


def pod_limits(container: dict[str, Any]) -> list[str]:
    """`docker run` flags for the pod limits of the executor's `container` spec, the ones
    `--runner docker` applies (`pipekit.pipeline.docker_local.PodLimits`)."""
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    from pipekit.pipeline.docker_local import PodLimits

    spec = json_format.ParseDict(
        container,
        pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec(),
        ignore_unknown_fields=True,
    )
    flag = {
        "nano_cpus": "--cpus",
        "mem_limit": "--memory",
        "memswap_limit": "--memory-swap",
        "shm_size": "--shm-size",
    }
    args = PodLimits.of(spec).docker_args()
    return [
        f"{flag[k]}={v / 1e9:g}" if k == "nano_cpus" else f"{flag[k]}={v}b" for k, v in args.items()
    ]


def applied_limits(name: str) -> dict[str, int]:
    """The container's CPU, memory and /dev/shm limits as Docker applied them."""
    out = subprocess.run(
        ["docker", "inspect", "-f", "{{json .HostConfig}}", name], capture_output=True, text=True
    )
    host = json.loads(out.stdout or "{}")
    return {k: host.get(k, 0) for k in ("NanoCpus", "Memory", "MemorySwap", "ShmSize")}


def start(
    image: str, cmd: list[str], env: dict[str, str], docker_args: list[str], prefix: str
) -> str:
    """A detached container of `image` running `cmd` on the host's network; its name."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    run = ["docker", "run", "-d", "--name", name, "--network", "host", *docker_args]
    for key, value in env.items():
        run += ["-e", f"{key}={value}"]
    subprocess.run([*run, image, *cmd], check=True, capture_output=True)
    return name


def wait_for_hold(name: str, timeout: float = 300) -> None:
    """Until the container's step says it holds at its crash point (`PIPEKIT_HOLD_AT`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        logs = _logs(name)
        if HOLD_MARK in logs:
            return
        if not _running(name):
            raise AssertionError(f"the step ended before its hold point:\n{logs[-3000:]}")
        time.sleep(0.5)
    raise AssertionError(f"no hold point within {timeout} s:\n{_logs(name)[-3000:]}")


def kill(name: str) -> None:
    subprocess.run(["docker", "kill", name], check=True, capture_output=True)


def wait(name: str, timeout: float = 600) -> int:
    out = subprocess.run(["docker", "wait", name], capture_output=True, text=True, timeout=timeout)
    return int(out.stdout.strip())


def finish(name: str) -> str:
    """The container's log; the container removed."""
    logs = _logs(name)
    subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    return logs


def hand_over(folder: Path) -> None:
    """The image's user owns the pod's scratch volumes (an emptyDir it can write)."""
    import os

    if os.geteuid() == 0:
        for path in [folder, *folder.rglob("*")]:
            os.chown(path, IMAGE_UID, IMAGE_UID)
    else:
        folder.chmod(0o777)


def _logs(name: str) -> str:
    out = subprocess.run(["docker", "logs", name], capture_output=True, text=True)
    return out.stdout + out.stderr


def _running(name: str) -> bool:
    out = subprocess.run(
        ["docker", "inspect", "-f", "{{.State.Running}}", name], capture_output=True, text=True
    )
    return out.stdout.strip() == "true"
