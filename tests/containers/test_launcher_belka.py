"""Belka under the KFP launcher's rules, in the image, from the BELKA layout in object
storage: make_dataset killed between shards (`docker kill`) and retried in a fresh container
redoes only the missing shards, to the uninterrupted store byte for byte; each training mode
(mlm, fps, clf) killed mid-run resumes from its checkpoint in object storage and ends with
an uninterrupted run's weights."""

from __future__ import annotations

import io

import pytest
import torch

from tests.belka.conftest import write_config
from tests.containers.conftest import listing, read_bytes, upload
from tests.launcher import Task, compiled_spec

pytestmark = [pytest.mark.container, pytest.mark.slow]

ROOT = "s3://lab/belka"


@pytest.fixture(scope="module")
def staged(image, store_env, tmp_path_factory) -> dict:
    from belka.config import load_config
    from belka.demo import make_demo
    from belka.pipeline_run import pipeline_arguments

    folder = tmp_path_factory.mktemp("belka")
    demo = make_demo(folder / "demo", n_train=500, n_test=120, n_extra=80, seed=1)
    cfg = write_config(folder, demo, {"training": {"epochs": 3}})
    args = pipeline_arguments(load_config(str(cfg)))
    raw = upload(store_env, demo.root / "raw", f"{ROOT}/raw")
    spec = compiled_spec("belka", "belka_pipeline", folder)

    def task(component: str, run: str, inputs: dict, **params) -> Task:
        params = {**params, "settings": args["settings"]}
        workdir = tmp_path_factory.mktemp(component)
        root = f"{ROOT}/{run}"
        return Task(spec, component, root, component, params, inputs, store_env, workdir, image)

    return {"task": task, "raw": raw}


def _run(task: Task) -> Task:
    done = task.run()
    assert done.exit_code == 0, done.logs[-4000:]
    return task


def _files(env: dict, uri: str) -> dict[str, bytes]:
    return {name: read_bytes(env, f"{uri}/{name}") for name in listing(env, uri)}


def _store(task, run: str, inputs: dict, hold_at: str | None = None) -> tuple:
    """make_dataset fanned out over 2 tasks, then gathered; `hold_at` kills the second part
    there once, and its retry runs in a fresh container. Returns the gather and the retry."""
    plan = task("make-dataset-plan", run, {"molecules": inputs["molecules"]}, tasks=2)
    ranges = plan.returned(_run(plan).attempts[-1])
    assert len(ranges) == 2 and ranges[1]["stop"] - ranges[1]["first"] >= 3
    parts, retry = [], None
    for k, part in enumerate(ranges):
        t = task("make-dataset-part", f"{run}/part-{k}", inputs, part=part)
        if k == 1 and hold_at:
            first = t.start(hold_at=hold_at)
            t.wait_for_hold(first)
            t.kill(first)
            retry = t.run()
            assert retry.exit_code == 0, retry.logs[-4000:]
        else:
            _run(t)
        parts.append(t.output_uri("shards"))
    return _run(task("make-dataset", run, {**inputs, "parts": parts})), retry


@pytest.fixture(scope="module")
def prepared(staged, store_env) -> dict:
    """generate_parquet and get_vocab; make_dataset fanned out whole, and with a part
    killed after its second shard then retried; create_val_dataset on the retried store."""
    task = staged["task"]
    mols = _run(task("generate-parquet", "run", {}, raw_dir=staged["raw"]))
    molecules = {"molecules": mols.output_uri("molecules")}
    vocab = _run(task("get-vocab", "run", molecules))
    inputs = {**molecules, "vocab": vocab.output_uri("vocab")}
    whole, _ = _store(task, "run-whole", inputs)
    killed, retry = _store(task, "run", inputs, hold_at="make_dataset.shard_written:2")
    val = _run(task("create-val-dataset", "run", {"store": killed.output_uri("store")}))
    return {
        "whole_store": whole.output_uri("store"),
        "store": killed.output_uri("store"),
        "retry": retry,
        "data": {
            "store": killed.output_uri("store"),
            "val_store": val.output_uri("val_store"),
            "vocab": inputs["vocab"],
        },
    }


def test_a_killed_make_dataset_task_retried_in_a_fresh_container_redoes_only_what_is_missing(
    prepared, store_env
) -> None:
    ours = _files(store_env, prepared["store"])
    ref = _files(store_env, prepared["whole_store"])
    assert ", 2 kept from an earlier run" in prepared["retry"].logs
    store = {name for name in ref if name.startswith("belka.tfr/")}
    assert len(store) >= 3 * 5 + 2  # 5 shards' data, skipped molecules and records, 2 JSON
    assert store == {name for name in ours if name.startswith("belka.tfr/")}
    for name in store:  # the gathered store, manifest and all, byte for byte
        assert ours[name] == ref[name], name
    assert "logs/belka.log" in ours  # uploaded by the launcher after success


@pytest.fixture(scope="module")
def trained(staged, prepared) -> dict[str, str]:
    """mlm -> fps -> clf, uninterrupted: the model each mode's test starts from and the
    weights it must reach."""
    models: dict[str, str] = {}
    previous: dict[str, str] = {}
    for mode in ("mlm", "fps", "clf"):
        t = _run(
            staged["task"](
                "train-model", f"whole-{mode}", {**prepared["data"], **previous}, mode=mode
            )
        )
        models[mode] = t.output_uri("model")
        previous = {"previous": models[mode]}
    return models


@pytest.mark.parametrize("mode", ["mlm", "fps", "clf"])
def test_a_killed_train_task_retried_in_a_fresh_container_resumes_from_object_storage(
    staged, prepared, trained, store_env, mode: str
) -> None:
    before = {"mlm": {}, "fps": {"previous": trained["mlm"]}, "clf": {"previous": trained["fps"]}}
    inputs = {**prepared["data"], **before[mode]}
    task = staged["task"]("train-model", f"killed-{mode}", inputs, mode=mode)
    first = task.start(hold_at="train_model.latest_saved:1")
    task.wait_for_hold(first)
    task.kill(first)
    model = task.output_uri("model")
    assert "latest_model.pt" in listing(store_env, model)
    retry = task.run()
    assert retry.exit_code == 0, retry.logs[-4000:]
    assert f"resuming {mode} after epoch 1 from s3://" in retry.logs
    for name in ("best_model.pt", "latest_model.pt"):
        ours = torch.load(io.BytesIO(read_bytes(store_env, f"{model}/{name}")), weights_only=True)
        ref_uri = f"{trained[mode]}/{name}"
        ref = torch.load(io.BytesIO(read_bytes(store_env, ref_uri)), weights_only=True)
        for key, value in ref["model_state"].items():
            assert torch.equal(ours["model_state"][key], value), f"{mode} {name}: {key}"
