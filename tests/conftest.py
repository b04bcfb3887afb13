"""Fixtures that build tiny data: a demo dataset, and a hand-made edge-case dataset."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path


def _share_the_cores() -> None:
    """Under pytest-xdist, N test processes share the machine: each (and every process a test
    starts: pipeline tasks, torchrun ranks, DataLoader workers) gets its share of the cores
    for torch's threads, or N x cores threads thrash (tests ran at half speed)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers > 1:
        share = str(max(1, (os.cpu_count() or 1) // workers))
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, share)


_share_the_cores()  # before torch is imported (by the imports below)

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402

from voxelflex.config import load_config  # noqa: E402
from voxelflex.data.demo import DemoDataset  # noqa: E402
from voxelflex.steps.demo_data import make_demo_dataset  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

FAST = {
    "model": {"base_filters": 4, "num_residual_blocks": 1, "head_hidden": 16, "dropout_rate": 0.0},
    "training": {
        "batch_size": 32,
        "num_epochs": 2,
        "num_workers": 0,
        "chunk_size": 2,
        "shuffle_buffer_size": 64,
        "checkpoint_every": 1,
    },
    "logging": {"show_progress": False},
}


@pytest.fixture(autouse=True)
def _fsspec_conf_per_test():
    """Configs' storage_options go into fsspec's process-wide config (as in a CLI process);
    a test's options (a small S3 block size, say) must not reach the tests after it."""
    import copy

    from fsspec.config import conf

    saved = copy.deepcopy(conf)
    yield
    conf.clear()
    conf.update(saved)


@pytest.fixture(autouse=True)
def _logging_per_test():
    """A command run in a test points the root logger's console handler at that test's
    captured stderr; later tests must not log into it once it is closed."""
    import logging

    yield
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()


@pytest.fixture
def figure_checks(monkeypatch):
    """Every figure the test's steps save, checked as a scientist would (tests/plotcheck.py)."""
    from tests.plotcheck import FigureChecks

    return FigureChecks().install(monkeypatch)


def free_port() -> int:
    """A TCP port nothing listens on now (for metrics servers and torchrun rendezvous)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Container tests (marked `container`) run the project's image. They need a Docker daemon:
# where none answers they skip with the reason, except in CI (`CI=true`), where `.ci/run`
# starts one and a missing daemon fails them loudly. The image is built (`images/build.sh`;
# cached layers: seconds after a source change) when missing or holding other code.
def docker_problem() -> str | None:
    """Why containers cannot run here, or None."""
    try:
        out = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        return "the docker command is not installed (docs/platform.md: images)"
    except subprocess.TimeoutExpired:
        return "the Docker daemon does not answer"
    if out.returncode != 0:
        said = out.stderr.strip().splitlines()
        return "no Docker daemon answers" + (f" ({said[-1]})" if said else "")
    return None


def image_digest(image: str) -> str | None:
    out = subprocess.run(
        ["docker", "run", "--rm", image, "python", "-m", "pipekit.release", "digest"],
        capture_output=True,
        text=True,
    )
    return out.stdout.strip() if out.returncode == 0 else None


@pytest.fixture(scope="session")
def image(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The CPU image, holding this checkout's code."""
    from pipekit.pipeline.images import CPU_IMAGE
    from pipekit.release import code_digest

    problem = docker_problem()
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(f"container tests cannot run in CI: {problem}")
        pytest.skip(f"container tests need Docker: {problem}")
    if image_digest(CPU_IMAGE) != code_digest():
        log = tmp_path_factory.mktemp("image") / "build.log"
        with log.open("w") as fh:
            built = subprocess.run([str(ROOT / "images" / "build.sh")], stdout=fh, stderr=fh)
        assert built.returncode == 0, f"images/build.sh failed:\n{log.read_text()[-4000:]}"
        assert image_digest(CPU_IMAGE) == code_digest(), "the image built holds other code"
    return CPU_IMAGE


@pytest.fixture(params=["subprocess", pytest.param("docker", marks=pytest.mark.container)])
def runner(request: pytest.FixtureRequest) -> str:
    """`pipeline run --local --runner`: each step a subprocess, or in the project's image."""
    if request.param == "docker":
        request.getfixturevalue("image")
    return request.param


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> DemoDataset:
    """Six small domains; read-only: tests that write outputs use `demo_config`."""
    return make_demo_dataset(
        tmp_path_factory.mktemp("demo"), n_domains=6, seed=3, min_residues=30, max_residues=40
    )


@pytest.fixture(scope="session")
def packed_store(demo_data: DemoDataset, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The demo voxels mirrored into a packed zarr store with small (64-residue) chunks."""
    from voxelflex.steps import mirror

    dst = tmp_path_factory.mktemp("packed") / "store"
    mirror.run(str(demo_data.voxel_file), str(dst), chunk_rows=64)
    return str(dst)


@pytest.fixture(scope="session")
def s3_endpoint():
    """A real S3 API on loopback (moto's server; in-process mocks do not reach s3fs)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(s3_endpoint, monkeypatch):
    import s3fs

    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": s3_endpoint,
    }.items():
        monkeypatch.setenv(key, value)
    # no instance-cache clearing: dropping live filesystems leaves aiohttp sessions to be
    # collected after logging shuts down; the endpoint is fixed for the whole session anyway
    fs = s3fs.S3FileSystem()
    if not fs.exists("voxelflex"):
        fs.mkdir("voxelflex")
    return fs


def write_config(path: Path, data: DemoDataset, extra: dict | None = None) -> Path:
    """A config for `data` whose outputs go under `path` (so tests never share outputs)."""
    cfg = yaml.safe_load(data.config.read_text())
    for section, values in cfg["input"].items():
        cfg["input"][section] = str(data.root / values)
    cfg["data"]["processed_dir"] = str(path / "processed")
    cfg["output"]["base_dir"] = str(path / "outputs")
    for section, values in {**FAST, **(extra or {})}.items():
        cfg.setdefault(section, {}).update(values)
    path.mkdir(parents=True, exist_ok=True)
    out = path / "config.yaml"
    out.write_text(yaml.safe_dump(cfg))
    return out


@pytest.fixture
def demo_config(tmp_path: Path, demo_data: DemoDataset) -> Path:
    return write_config(tmp_path, demo_data)


@pytest.fixture
def demo_cfg(demo_config: Path):
    return load_config(str(demo_config))


def grid(seed: int, dtype=bool) -> np.ndarray:
    """A sparse aposteriori-layout grid (21, 21, 21, 5)."""
    rng = np.random.default_rng(seed)
    return (rng.random((21, 21, 21, 5)) < 0.01).astype(dtype)


def write_h5(path: Path, layout: dict[str, dict[str, dict[str, np.ndarray]]]) -> Path:
    with h5py.File(path, "w") as f:
        for domain, chains in layout.items():
            for chain, residues in chains.items():
                g = f.require_group(domain).require_group(chain)
                for key, arr in residues.items():
                    g.create_dataset(key, data=arr, compression="gzip")
    return path


def metrics_report(per_domain: dict[str, float | None]) -> dict:
    """A minimal evaluation_metrics report with the given mean per-domain r per temperature."""
    per_t = {t: {"mean_per_domain_pearson": r, "pearson": 0.9} for t, r in per_domain.items()}
    pooled = {"pearson": 0.9, "spearman": 0.9, "rmse": 0.05, "mae": 0.04, "r2": 0.8}
    return {
        "model": {"pooled": pooled, "per_temperature": per_t},
        "baseline_temperature_mean": {"pooled": {**pooled, "rmse": 0.2}},
    }


def write_json(path: Path, report: dict) -> str:
    path.write_text(json.dumps(report))
    return str(path)


def pdb_line(
    serial: int,
    name: str,
    resname: str,
    chain: str,
    resnum: int,
    xyz,
    icode: str = "",
    altloc: str = "",
    occ: float = 1.0,
    record: str = "ATOM",
    element: str | None = None,
) -> str:
    element = element or name[0]
    atom = f" {name:<3}" if len(name) < 4 else name
    x, y, z = xyz
    return (
        f"{record:<6}{serial:>5} {atom}{altloc:1}{resname:>3} {chain:1}{resnum:>4}{icode:1}   "
        f"{x:8.3f}{y:8.3f}{z:8.3f}{occ:6.2f}{20.0:6.2f}          {element:>2}"
    )


def ideal_residue(ca, axes=None) -> dict[str, np.ndarray]:
    """Backbone in a frame with axes rows x, y, z at `ca`: N on +y, C in the xy plane."""
    ca = np.asarray(ca, float)
    axes = np.eye(3) if axes is None else axes
    local = {
        "N": np.array([0.0, 1.458, 0.0]),
        "CA": np.zeros(3),
        "C": 1.525 * np.array([np.sin(np.deg2rad(111.2)), np.cos(np.deg2rad(111.2)), 0.0]),
        "O": np.array([2.1, -1.6, 0.6]),
    }
    return {k: ca + v @ axes for k, v in local.items()}


def write_pdb(path: Path, residues: list[tuple[str, str, int, dict]], extra=()) -> Path:
    lines, serial = [], 1
    for resname, chain, num, atoms in residues:
        for name, xyz in atoms.items():
            lines.append(pdb_line(serial, name, resname, chain, num, xyz))
            serial += 1
    lines.extend(extra)
    path.write_text("\n".join([*lines, "END"]) + "\n")
    return path


def write_tiny_checkpoint(path: Path) -> str:
    """An untrained model of the FAST size saved as a checkpoint predict/evaluate can load."""
    from pipekit.checkpoint import save_checkpoint
    from voxelflex.config import config_from_dict
    from voxelflex.data.temperature import TemperatureScaler
    from voxelflex.steps.train import build_model, model_config

    cfg = config_from_dict({"model": FAST["model"]})
    payload = {
        "epoch": 0,
        "model_state": build_model(cfg).state_dict(),
        "model_config": model_config(cfg),
        "temp_scaling": TemperatureScaler(320.0, 450.0).to_dict(),
    }
    save_checkpoint(str(path), payload)
    return str(path)
