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
    tmp_path: Path, s3, raw_proteins, tiny_model, embedded, monkeypatch
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
    res = train.run(cfg)
    assert np.isfinite(res.best_val_auroc) and res.epochs_run == 1
    assert embed.run(cfg).model_calls == 0


@pytest.mark.slow
def test_the_pipeline_runs_locally_end_to_end(tmp_path: Path, raw_proteins, tiny_model, capsys):
    from esm2pairs.cli import main

    cfg = write_esm_config(tmp_path, raw_proteins, tiny_model, {"training": {"num_epochs": 2}})
    root = tmp_path / "kfp"
    assert (
        main(["pipeline", "run", "--local", "--config", str(cfg), "--pipeline-root", str(root)])
        == 0
    )
    out = capsys.readouterr().out
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
    assert (
        main(["pipeline", "run", "--local", "--config", str(cfg), "--pipeline-root", str(root)])
        == 0
    )
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
    for step in ("embed", "train"):
        assert resources[f"exec-{step}"]["resourceCount"] == "1"
        k8s = executors[f"exec-{step}"]
        assert k8s["nodeSelector"]["nodeSelectorJson"]
        assert k8s["tolerations"][0]["key"] == "nvidia.com/gpu"
        assert k8s["emptyDirMounts"][0]["mountPath"] == "/dev/shm"
        assert k8s["secretAsEnv"]
    for step in ("preprocess", "pairs", "evaluate", "visualize"):
        assert resources[f"exec-{step}"] is None
