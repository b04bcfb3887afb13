"""A stand-in for Kubeflow Trainer on this machine, for every system's TrainJob tests: each
node of a job is the job's own torchrun command, run as a process with the PET_* variables
the torch runtime sets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import free_port


def pet_env(trainer: dict, node: int, port: str) -> dict[str, str]:
    """What Kubeflow Trainer's torch runtime sets on node `node` of a TrainJob's `trainer`,
    so the node's plain `torchrun` joins the job (every node on this machine's loopback)."""
    return {
        "PET_NNODES": str(trainer["numNodes"]),
        "PET_NPROC_PER_NODE": str(trainer["numProcPerNode"]),
        "PET_NODE_RANK": str(node),
        "PET_MASTER_ADDR": "127.0.0.1",
        "PET_MASTER_PORT": port,
    }


def _pod(name: str, **status) -> dict:
    return {"metadata": {"name": name}, "status": status}


class LocalTrainer:
    """Plays Kubeflow Trainer on this machine: each node of a TrainJob is the job's own
    command (torchrun) with the PET_* variables the torch runtime sets; pods are processes."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.jobs: dict[str, tuple[dict, list]] = {}
        self.deleted: list[str] = []

    def create(self, body):
        trainer = body["spec"]["trainer"]
        assert trainer["command"][0] == "torchrun"
        port = str(free_port())
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PET_", "RANK"))}
        env.update({e["name"]: e["value"] for e in trainer["env"] if "value" in e})
        env.update(OMP_NUM_THREADS="1", PIPEKIT_DIST_TIMEOUT_S="90")
        procs = []
        for node in range(trainer["numNodes"]):
            pet = pet_env(trainer, node, port)
            log = open(self.tmp / f"node-{node}.log", "w")  # noqa: SIM115 (closed on delete)
            cmd = [sys.executable, "-m", "torch.distributed.run", *trainer["command"][1:]]
            procs.append((subprocess.Popen(cmd, env={**env, **pet}, stdout=log, stderr=log), log))
        self.jobs[body["metadata"]["name"]] = (body, procs)

    def get(self, namespace, name):
        if name not in self.jobs:
            return None
        body, procs = self.jobs[name]
        codes = [p.poll() for p, _ in procs]
        if None in codes and not any(c not in (None, 0) for c in codes):
            return {**body, "status": {}}
        kind = "Complete" if all(c == 0 for c in codes) else "Failed"
        cond = {"type": kind, "status": "True", "reason": "Jobs" + kind, "message": ""}
        return {**body, "status": {"conditions": [cond]}}

    def pods(self, namespace, job):
        out = []
        for node, (proc, _) in enumerate(self.jobs[job][1]):
            code = proc.poll()
            state = {"running": {}} if code is None else {"terminated": {"exitCode": code}}
            out.append(
                _pod(f"{job}-node-0-{node}", containerStatuses=[{"name": "node", "state": state}])
            )
        return out

    def log_tail(self, namespace, pod, lines=200):
        node = int(pod.rsplit("-", 1)[1])
        return "\n".join((self.tmp / f"node-{node}.log").read_text().splitlines()[-lines:])

    def delete(self, namespace, name):
        self.deleted.append(name)
        for proc, log in self.jobs.pop(name, (None, []))[1]:
            proc.kill()
            proc.wait()
            log.close()
