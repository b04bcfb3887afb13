"""The cache in object storage (a real S3 API on loopback) read by DataLoader workers; the
model read from a URI; the whole pipeline through kfp.local; the compiled YAML."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from esm2pairs.config import load_config
from esm2pairs.paths import Layout
from esm2pairs.steps import embed, pairs, preprocess, train
from tests.esm2pairs.conftest import write_esm_config


def test_an_s3_cache_and_model_uri_serve_training_with_workers(
    tmp_path: Path, s3, raw_proteins, tiny_model, embedded, monkeypatch, caplog
) -> None:
    monkeypatch.setenv("ESM2PAIRS_MODEL_CACHE", str(tmp_path / "models"))
    s3.put(str(tiny_model) + "/", "voxelflex/esm/models/esm2_tiny/", recursive=True)
    cfg_path = write_esm_config(
        tmp_path,
        raw_proteins,
        tiny_model,
        {
            "paths": {"embeddings_dir": "s3://voxelflex/esm/embeddings/flu_test/v1"},
            "embeddings": {"model_ckpt": "s3://voxelflex/esm/models/esm2_tiny"},
            "training": {"num_workers": 2, "num_epochs": 1},
        },
    )
    cfg = load_config(str(cfg_path))
    preprocess.run(cfg)
    first = embed.run(cfg)
    assert first.n_computed == first.n_sequences
    assert s3.exists("voxelflex/esm/embeddings/flu_test/v1/master_esm2_embeddings.parquet")
    assert not s3.exists("voxelflex/esm/embeddings/flu_test/v1/_parts") or not s3.ls(
        "voxelflex/esm/embeddings/flu_test/v1/_parts"
    )
    # the model copied from the URI is the same model: the local cache's signature
    local = load_config(str(embedded))
    import h5py

    with h5py.File(Layout.from_config(local).cache_h5) as f:
        local_sig = f.attrs["model_signature"]
    from esm2pairs.data.cache import MasterCache

    meta = MasterCache(
        "s3://voxelflex/esm/embeddings/flu_test/v1",
        "master_esm2_embeddings.h5",
        "master_esm2_embeddings.parquet",
    ).meta()
    assert meta is not None and meta.model_signature == local_sig
    pairs.run(cfg)
    with caplog.at_level("INFO", logger="esm2pairs.data.pair_loader"):
        res = train.run(cfg)
    assert np.isfinite(res.best_val_auroc) and res.epochs_run == 1
    # the rows of both splits came from S3 once; the workers read them from memory
    assert "rows the pairs use" in caplog.text
    assert "from s3://voxelflex/esm/embeddings/flu_test/v1" in caplog.text
    assert embed.run(cfg).model_calls == 0


@pytest.mark.slow
def test_the_pipeline_runs_locally_end_to_end(
    tmp_path: Path, raw_proteins, tiny_model, capsys, runner
) -> None:
    from esm2pairs.cli import main

    cfg = write_esm_config(
        tmp_path,
        raw_proteins,
        tiny_model,
        {"training": {"num_epochs": 2}, "embeddings": {"shards": 2}},  # two embed tasks
    )
    root = tmp_path / "kfp"
    argv = ["pipeline", "run", "--local", "--config", str(cfg), "--pipeline-root", str(root)]
    assert main([*argv, "--runner", runner]) == 0
    out = capsys.readouterr().out
    assert out.count("embed-shard") >= 2, out  # the fan-out's two tasks
    for line in (
        "embed/metrics",
        "cache_hit_rate = 0",
        "train/model",
        "auroc = ",
        "visualize/report",
    ):
        assert line in out, out
    layout = Layout.from_config(load_config(str(cfg)))
    # the cache by URI, outputs published to the config's folders for the step commands
    assert Path(layout.cache_h5).is_file() and Path(layout.cache_index).is_file()
    assert Path(layout.sampled_isolates).is_file() and Path(layout.pairs("test")).is_file()
    assert Path(layout.trained_model).is_file()
    assert Path(layout.evaluation_metrics("test")).is_file()
    assert (Path(layout.visualizations_dir) / "roc_curve_test.png").is_file()
    # a second run computes nothing: the cache outlives the run
    assert main([*argv, "--runner", runner]) == 0
    assert "cache_hit_rate = 1" in capsys.readouterr().out


def test_compiled_yaml_is_current_and_gpu_steps_are_on_gpu_nodes(tmp_path: Path) -> None:
    from lab_pipelines import COMPILED_DIR, pipelines_of
    from pipekit.pipeline.compile import compile_pipelines
    from pipekit.pipeline.tasks import DEFAULT_GPU_PRODUCT

    (fresh,) = compile_pipelines(pipelines_of("esm2pairs"), tmp_path)
    committed = COMPILED_DIR / fresh.name
    assert fresh.read_text() == committed.read_text(), (
        f"{committed} is stale: run `esm2pairs pipeline compile` and commit it"
    )
    spec, platform = yaml.safe_load_all(committed.read_text())
    assert spec["root"]["inputDefinitions"]["parameters"]["gpu_product"]["defaultValue"] == (
        DEFAULT_GPU_PRODUCT
    )
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    resources = {
        name: ex["container"].get("resources", {}).get("accelerator")
        for name, ex in spec["deploymentSpec"]["executors"].items()
    }
    for step in ("embed-shard", "train"):  # the embed merge needs no GPU
        assert resources[f"exec-{step}"]["resourceCount"] == "1"
        k8s = executors[f"exec-{step}"]
        assert k8s["nodeSelector"]["nodeSelectorJson"]
        assert k8s["tolerations"][0]["key"] == "nvidia.com/gpu"
        assert k8s["emptyDirMounts"][0]["mountPath"] == "/dev/shm"
        assert k8s["secretAsEnv"]
    for step in ("preprocess", "embed-plan", "embed", "pairs", "evaluate", "visualize"):
        assert resources[f"exec-{step}"] is None
    # one embed-shard task per item of embed-plan's list, the merge after all of them
    loop = next(t for t in spec["root"]["dag"]["tasks"].values() if "parameterIterator" in t)
    assert loop["parameterIterator"]["items"]["inputParameter"].startswith(
        "pipelinechannel--embed-plan"
    )
    assert loop["taskInfo"]["name"] in spec["root"]["dag"]["tasks"]["embed"]["dependentTasks"]
    assert spec["root"]["inputDefinitions"]["parameters"]["embed_shards"]["defaultValue"] == 1


def test_an_s3_outage_mid_embed_is_one_line_and_a_rerun_completes_the_cache(
    tmp_path: Path, raw_proteins, tiny_model, embedded
) -> None:
    """A server of its own, stopped once the first part is in the store: the embed process
    fails (exit 2) with one line naming the cache; with the service back, a re-run merges
    what was saved and computes the rest, and the cache equals an uninterrupted run's."""
    import os
    import subprocess
    import sys
    import time

    import h5py
    import numpy as np
    import s3fs
    from moto.server import ThreadedMotoServer

    def serve() -> tuple[ThreadedMotoServer, dict[str, str]]:
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": f"http://{host}:{port}",
            # one owner, as a retried pipeline task: it takes over the lease the failed run
            # could not release while the store was down
            "PIPEKIT_LOCK_OWNER": "embed-task-1",
            # botocore tries each request once (a user's setting too): s3fs's own five tries
            # remain, and botocore's default five inside each only made the outage take ~20 s
            "AWS_MAX_ATTEMPTS": "1",
        }
        return server, env

    server, env = serve()
    fs = s3fs.S3FileSystem(endpoint_url=env["AWS_ENDPOINT_URL"], key="testing", secret="testing")
    fs.mkdir("esm-outage")  # moto keeps one state per process, across its servers
    cache = "s3://esm-outage/embeddings/flu_test/v1"
    cfg_path = write_esm_config(
        tmp_path,
        raw_proteins,
        tiny_model,
        {"paths": {"embeddings_dir": cache}, "embeddings": {"flush_every": 16, "batch_size": 8}},
    )
    preprocess.run(load_config(str(cfg_path)))
    cmd = [sys.executable, "-m", "esm2pairs", "embed", "--config", str(cfg_path), "-q"]
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not fs.glob("esm-outage/embeddings/flu_test/v1/_parts/*"):
        time.sleep(0.05)
    server.stop()  # the object store goes away mid-run
    err = proc.communicate(timeout=300)[1].strip()
    lines = [ln for ln in err.splitlines() if ln.startswith("esm2pairs: error:")]
    assert proc.returncode == 2 and len(lines) == 1, err[-2000:]
    assert cache in lines[0] and "did not answer" in lines[0]
    server, env = serve()
    try:
        again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert again.returncode == 0, again.stderr[-2000:]
        fs = s3fs.S3FileSystem(
            endpoint_url=env["AWS_ENDPOINT_URL"], key="testing", secret="testing"
        )
        with fs.open(cache + "/master_esm2_embeddings.h5", "rb") as fh, h5py.File(fh) as f:
            keys, emb = f["emb_keys"][:].astype(str), f["emb"][:]
        assert not fs.glob("esm-outage/embeddings/flu_test/v1/_parts/*")
    finally:
        server.stop()
    ref = Layout.from_config(load_config(str(embedded)))
    with h5py.File(ref.cache_h5) as f:
        ref_keys, ref_emb = f["emb_keys"][:].astype(str), f["emb"][:]
    assert len(keys) == len(set(keys)) == len(ref_keys)
    mine = dict(zip(keys, emb, strict=True))
    for k, v in zip(ref_keys, ref_emb, strict=True):
        np.testing.assert_allclose(mine[k], v, rtol=1e-5, atol=1e-6)
