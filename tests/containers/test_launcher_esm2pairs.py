"""esm2pairs under the KFP launcher's rules, in the image, with the model and the master cache
in object storage: embed killed between parts (`docker kill`) and retried in a fresh
container completes the cache with nothing lost or doubled; train killed mid-run resumes from
its checkpoint in object storage and ends with an uninterrupted run's weights."""

from __future__ import annotations

import io

import h5py
import numpy as np
import pytest
import torch

from tests.containers.conftest import listing, read_bytes, upload
from tests.esm2pairs.conftest import write_esm_config
from tests.launcher import Task, compiled_spec

pytestmark = [pytest.mark.container, pytest.mark.slow]

ROOT = "s3://lab/esm"
CACHE = f"{ROOT}/embeddings/flu_test/v1"
EXTRA = {
    "embeddings": {"flush_every": 16, "batch_size": 8},
    "training": {"num_epochs": 4, "patience": 10, "num_workers": 0},
}


@pytest.fixture(scope="module")
def staged(image, store_env, tmp_path_factory) -> dict:
    from esm2pairs.config import load_config
    from esm2pairs.demo import make_tiny_esm, protein_table
    from esm2pairs.pipeline_run import pipeline_arguments

    folder = tmp_path_factory.mktemp("esm")
    model = upload(store_env, make_tiny_esm(folder / "esm2_tiny", seed=0), f"{ROOT}/esm2_tiny")
    raw = folder / "protein_data.csv"
    protein_table(n_isolates=40, seed=1).to_csv(raw, index=False)
    raw_uri = upload(store_env, raw, f"{ROOT}/raw/protein_data.csv")
    cfg = write_esm_config(folder, raw, folder / "esm2_tiny", EXTRA)
    settings = pipeline_arguments(load_config(str(cfg)))["settings"]
    spec = compiled_spec("esm2pairs", "esm2pairs_pipeline", folder)

    def task(component: str, run: str, params: dict, inputs: dict) -> Task:
        params = {**params, "settings": settings}
        workdir = tmp_path_factory.mktemp(component)
        return Task(
            spec, component, f"{ROOT}/{run}", component, params, inputs, store_env, workdir, image
        )

    return {"task": task, "model": model, "raw": raw_uri}


def _run(task: Task) -> Task:
    done = task.run()
    assert done.exit_code == 0, done.logs[-4000:]
    return task


def _cache(env: dict, uri: str) -> dict[str, np.ndarray]:
    with h5py.File(io.BytesIO(read_bytes(env, f"{uri}/master_esm2_embeddings.h5"))) as f:
        keys, emb = f["emb_keys"][:].astype(str), f["emb"][:]
    assert len(keys) == len(set(keys)), "a sequence stored twice"
    return dict(zip(keys, emb, strict=True))


@pytest.fixture(scope="module")
def prepared(staged, store_env) -> dict:
    """preprocess, then embed killed after its first part and retried, then pairs."""
    task = staged["task"]
    pre = _run(task("preprocess", "run", {"raw_protein_file": staged["raw"]}, {}))
    proteins = {"proteins": pre.output_uri("proteins")}
    whole = _run(
        task(
            "embed",
            "run-whole",
            {"embeddings_uri": f"{ROOT}/whole-cache", "model_ckpt": staged["model"]},
            proteins,
        )
    )
    embed = task("embed", "run", {"embeddings_uri": CACHE, "model_ckpt": staged["model"]}, proteins)
    first = embed.start(hold_at="embed.part_written:1")
    embed.wait_for_hold(first)
    embed.kill(first)
    assert listing(store_env, f"{CACHE}/_parts"), "the killed attempt's part is in the store"
    retry = embed.run()
    assert retry.exit_code == 0, retry.logs[-4000:]
    pairs = _run(
        task(
            "pairs",
            "run",
            {"embeddings_uri": CACHE},
            {**proteins, "run_info": embed.output_uri("run_info")},
        )
    )
    return {
        "retry": retry,
        "whole_cache": f"{ROOT}/whole-cache",
        "pair_sets": pairs.output_uri("pair_sets"),
        "whole_embed": whole,
    }


def test_a_killed_embed_task_retried_in_a_fresh_container_completes_the_cache(
    prepared, store_env
) -> None:
    retry = prepared["retry"]
    metrics = retry.metrics()
    assert 0 < metrics["computed"] < metrics["sequences"], metrics  # it kept the first part
    assert not listing(store_env, f"{CACHE}/_parts")
    ours, ref = _cache(store_env, CACHE), _cache(store_env, prepared["whole_cache"])
    assert ours.keys() == ref.keys()
    for key, value in ref.items():
        np.testing.assert_allclose(ours[key], value, rtol=1e-5, atol=1e-6)


def test_a_killed_train_task_retried_in_a_fresh_container_resumes_from_object_storage(
    staged, prepared, store_env
) -> None:
    def train(run: str) -> Task:
        inputs = {"pair_sets": prepared["pair_sets"]}
        return staged["task"]("train", run, {"embeddings_uri": CACHE}, inputs)

    whole = _run(train("train-whole"))
    task = train("train-killed")
    first = task.start(hold_at="train.best_saved:2")
    task.wait_for_hold(first)
    task.kill(first)
    model = task.output_uri("model")
    assert "models/latest_model.pt" in listing(store_env, model)
    retry = task.run()
    assert retry.exit_code == 0, retry.logs[-4000:]
    assert "resuming after epoch" in retry.logs and "from s3://" in retry.logs
    assert "logs/esm2pairs.log" in listing(store_env, model)
    for name in ("trained_model.pt", "models/latest_model.pt"):
        ours = torch.load(io.BytesIO(read_bytes(store_env, f"{model}/{name}")), weights_only=True)
        ref_uri = f"{whole.output_uri('model')}/{name}"
        ref = torch.load(io.BytesIO(read_bytes(store_env, ref_uri)), weights_only=True)
        for key, value in ref["model_state"].items():
            assert torch.equal(ours["model_state"][key], value), f"{name}: {key} differs"
