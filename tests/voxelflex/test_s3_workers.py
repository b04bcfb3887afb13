"""Object storage read by DataLoader workers, against a real S3 API on loopback (moto's
server, what s3fs itself tests against): forked workers open their own handles, and an
outage longer than the client's retries is one line that says what failed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import write_config
from voxelflex.cli import main
from voxelflex.steps import mirror

# s3fs reads ahead in blocks; with 16 KiB blocks the demo HDF5 spans many, so workers must
# make requests of their own (a file inside one block would be served from the parent's copy)
SMALL_BLOCKS = {"s3": {"default_block_size": 16384}}


def _s3_config(tmp_path: Path, demo_data, voxel_uri: str, workers: int, epochs: int) -> Path:
    cfg = write_config(
        tmp_path, demo_data, {"training": {"num_workers": workers, "num_epochs": epochs}}
    )
    data = yaml.safe_load(cfg.read_text())
    data["input"]["voxel_file"] = voxel_uri
    data["input"]["storage_options"] = SMALL_BLOCKS
    cfg.write_text(yaml.safe_dump(data))
    return cfg


@pytest.fixture(scope="module")
def s3_voxels(demo_data, s3_endpoint) -> dict[str, str]:
    """The demo voxels on S3 twice: the per-residue HDF5 and a packed zarr store."""
    import s3fs

    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    env |= {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": s3_endpoint}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    fs = s3fs.S3FileSystem()
    if not fs.exists("workers"):
        fs.mkdir("workers")
    fs.put(str(demo_data.voxel_file), "workers/voxels.hdf5")
    assert fs.size("workers/voxels.hdf5") > 4 * SMALL_BLOCKS["s3"]["default_block_size"]
    mirror.run(str(demo_data.voxel_file), "s3://workers/voxels.packed", chunk_rows=64)
    yield {"hdf5": "s3://workers/voxels.hdf5", "packed": "s3://workers/voxels.packed"}
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["packed", "hdf5"])
def test_train_predict_evaluate_from_s3_with_two_workers(
    tmp_path: Path, demo_data, s3_voxels, layout: str
) -> None:
    cfg = _s3_config(tmp_path, demo_data, s3_voxels[layout], workers=2, epochs=2)
    base = ["--config", str(cfg), "-q"]
    assert main(["preprocess", *base]) == 0
    assert main(["train", *base]) == 0  # two epochs: workers forked twice, reading S3
    history = json.loads((tmp_path / "outputs" / "demo" / "training_history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    assert main(["predict", *base, "--split", "test", "--temperature", "330"]) == 0
    assert main(["evaluate", *base]) == 0


@pytest.mark.slow
def test_an_s3_outage_mid_training_is_one_line_naming_the_store(tmp_path: Path, demo_data) -> None:
    """A server of its own, stopped after the first epoch: the run fails (exit 2) with one
    line that names the store and says the service did not answer; no advice to re-mirror.
    (The packed store, as `runs/retrain.yaml` trains. botocore tries each request once,
    `AWS_MAX_ATTEMPTS=1` as any user may set it: s3fs's own five tries remain, and botocore's
    default five inside each of them only made the outage take 21 s to report.)"""
    layout = "packed"
    import s3fs
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    env |= {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": f"http://{host}:{port}"}
    env["AWS_MAX_ATTEMPTS"] = "1"
    fs = s3fs.S3FileSystem(endpoint_url=env["AWS_ENDPOINT_URL"], key="testing", secret="testing")
    bucket = "outage"  # moto keeps one state per process, across its servers
    fs.mkdir(bucket)
    cmd = [sys.executable, "-m", "voxelflex", "mirror", "--src", str(demo_data.voxel_file)]
    cmd += ["--dst", f"s3://{bucket}/voxels.packed", "--chunk-rows", "64", "-q"]
    subprocess.run(cmd, env=env, check=True, timeout=120)
    uri = f"s3://{bucket}/voxels.{layout}"
    cfg = _s3_config(tmp_path, demo_data, uri, workers=1, epochs=200)
    cli = [sys.executable, "-m", "voxelflex"]
    subprocess.run([*cli, "preprocess", "--config", str(cfg), "-q"], env=env, check=True)
    train = subprocess.Popen(
        [*cli, "train", "--config", str(cfg), "-q"], env=env, stderr=subprocess.PIPE, text=True
    )
    history = tmp_path / "outputs" / "demo" / "training_history.json"
    deadline = time.monotonic() + 120
    while not history.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    server.stop()  # the object store goes away mid-run
    err = train.communicate(timeout=300)[1].strip()
    assert train.returncode == 2, err[-2000:]
    assert len(err.splitlines()) == 1, err[-2000:]
    assert uri in err and "did not answer" in err and "voxelflex mirror" not in err
