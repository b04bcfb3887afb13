"""The image as a cluster starts it: its non-root user, its entry points, writable scratch."""

from __future__ import annotations

import os
import subprocess

import pytest

from pipekit.release import code_digest

pytestmark = pytest.mark.container


def _run(
    image: str, *cmd: str, user: str | None = None, options: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    # no network, a read-only root file system apart from /tmp and HOME's volume: what a
    # locked-down cluster gives a step; `options` are more `docker run` options
    docker = ["docker", "run", "--rm", "--network", "none", "--read-only", "--tmpfs", "/tmp"]
    if user:
        docker += ["--user", user]
    docker += options
    return subprocess.run([*docker, image, *cmd], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("command", ["voxelflex", "esm2pairs", "rheidae", "belka"])
def test_every_console_script_answers_help(image: str, command: str) -> None:
    out = _run(image, command, "--help")
    assert out.returncode == 0, out.stderr
    assert "usage:" in out.stdout


def test_the_image_runs_as_its_non_root_user_with_this_checkouts_code(image: str) -> None:
    out = _run(image, "sh", "-c", "id -u; id -un; echo $HOME; python -m pipekit.release digest")
    assert out.returncode == 0, out.stderr
    uid, name, home, digest = out.stdout.split()
    assert uid == "1000" and name == "pipelines" and home == "/home/pipelines"
    assert digest == code_digest()


@pytest.mark.parametrize("user", [None, "12345:0"], ids=["image-user", "arbitrary-uid"])
def test_scratch_places_are_writable(image: str, user: str | None) -> None:
    """Matplotlib's cache, torch's and the temp folder: a step writes them under its own uid
    and under the arbitrary uid some clusters (OpenShift) assign, with a read-only root."""
    script = (
        "import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt, torch, os;"
        "plt.plot([0, 1]); plt.savefig('/tmp/x.png');"
        "print(matplotlib.get_cachedir()); print(torch.randn(2).shape)"
    )
    out = _run(image, "python", "-c", script, user=user)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0].startswith("/tmp/")


def test_a_failing_step_fails_however_fast_its_container_goes(image: str) -> None:
    """kfp.local removes a step's container as it exits and, when the removal wins the race
    with reading its exit code, calls the step a success (seen here: 1 of 20 containers
    that exit 3 at once). Under `--runner docker` every one reads as the failure it is."""
    import contextlib
    import io

    import docker
    from kfp.local import docker_task_handler

    from pipekit.pipeline.docker_local import as_on_pods

    client = docker.from_env()
    codes = []
    with as_on_pods(), contextlib.redirect_stdout(io.StringIO()):
        for _ in range(20):
            run = docker_task_handler.run_docker_container
            codes.append(run(client, image, ["sh", "-c", "exit 3"], {}))
    assert codes == [3] * 20


def test_torch_threads_follow_the_containers_cpu_limit(image: str) -> None:
    """`--cpus 1` is the CFS quota a pod's `limits.cpu: 1` sets: the container still sees
    every core, torch alone would start a thread per core; a step's device resolution caps
    them at the limit, and an explicit OMP_NUM_THREADS still wins."""
    script = (
        "import torch; before = torch.get_num_threads();"
        "from pipekit.device import resolve_device; resolve_device('cpu');"
        "print(before, torch.get_num_threads())"
    )
    limited = _run(image, "python", "-c", script, options=("--cpus", "1"))
    assert limited.returncode == 0, limited.stderr
    before, after = map(int, limited.stdout.split())
    assert after == 1 <= before  # torch chose its threads from the cores it saw
    explicit = _run(
        image, "python", "-c", script, options=("--cpus", "1", "-e", "OMP_NUM_THREADS=2")
    )
    assert explicit.returncode == 0, explicit.stderr
    # torch itself caps OMP_NUM_THREADS at the cores it sees
    kept = str(min(2, len(os.sched_getaffinity(0))))
    assert explicit.stdout.split() == [kept, kept]
