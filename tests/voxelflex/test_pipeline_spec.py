"""The compiled pipeline: current, parseable by KFP's protos, with the cluster settings."""

from __future__ import annotations

import ast
import inspect
import textwrap
from pathlib import Path

import pytest
import yaml
from google.protobuf import json_format
from kfp.kubernetes import kubernetes_executor_config_pb2 as k8s_pb2
from kfp.pipeline_spec import pipeline_spec_pb2

from lab_pipelines import COMPILED_DIR, pipelines_of
from pipekit.pipeline.compile import compile_pipelines
from pipekit.pipeline.tasks import DEFAULT_GPU_PRODUCT
from pipekit.uri import S3_SECRET_ENV
from voxelflex import components

COMPILED = COMPILED_DIR / "voxelflex_pipeline.yaml"
STEPS = ("mirror", "preprocess", "train", "predict", "evaluate", "visualize")
GPU_STEPS = ("train", "predict")


@pytest.fixture(scope="module")
def docs() -> tuple[pipeline_spec_pb2.PipelineSpec, dict[str, k8s_pb2.KubernetesExecutorConfig]]:
    spec_doc, platform_doc = yaml.safe_load_all(COMPILED.read_text())
    spec = json_format.ParseDict(spec_doc, pipeline_spec_pb2.PipelineSpec())
    executors = platform_doc["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    k8s = {
        name.removeprefix("exec-"): json_format.ParseDict(cfg, k8s_pb2.KubernetesExecutorConfig())
        for name, cfg in executors.items()
    }
    return spec, k8s


def _tasks(spec: pipeline_spec_pb2.PipelineSpec) -> dict[str, pipeline_spec_pb2.PipelineTaskSpec]:
    """Every task, in the root DAG or nested in a condition's sub-DAG."""
    out = dict(spec.root.dag.tasks)
    for comp in spec.components.values():
        out.update(comp.dag.tasks)
    return out


def _selector_source(cfg: k8s_pb2.KubernetesExecutorConfig) -> str:
    """The task whose output is this step's node selector (seen through a condition's
    sub-DAG, it arrives as the channel `pipelinechannel--<task>-Output`)."""
    json_ = cfg.node_selector.node_selector_json
    if json_.task_output_parameter.producer_task:
        return json_.task_output_parameter.producer_task
    return json_.component_input_parameter.removeprefix("pipelinechannel--").removesuffix("-Output")


def test_compiled_yaml_is_current(tmp_path: Path) -> None:
    fresh = compile_pipelines(pipelines_of("voxelflex"), tmp_path)
    assert {p.name for p in fresh} == {p.name for p in COMPILED_DIR.glob("voxelflex_*.yaml")}
    for path in fresh:
        committed = COMPILED_DIR / path.name
        assert path.read_text() == committed.read_text(), (
            f"{committed} is stale: run `voxelflex pipeline compile` and commit it"
        )


def test_gpu_steps_request_a_gpu_on_the_chosen_nodes(docs) -> None:
    spec, k8s = docs
    for step in GPU_STEPS:
        res = spec.deployment_spec["executors"][f"exec-{step}"]["container"]["resources"]
        assert res["accelerator"]["resourceType"] == "nvidia.com/gpu"
        assert res["accelerator"]["resourceCount"] == "1"
        cfg = k8s[step]
        # the selector comes from the gpu-node-selector task, fed by the gpu_product parameter
        assert _selector_source(cfg) == "gpu-node-selector"
        assert [(t.key, t.operator, t.effect) for t in cfg.tolerations] == [
            ("nvidia.com/gpu", "Exists", "NoSchedule")
        ]
        (shm,) = cfg.empty_dir_mounts
        assert (shm.mount_path, shm.medium) == ("/dev/shm", "Memory")
    tasks = spec.root.dag.tasks
    selector_input = tasks["gpu-node-selector"].inputs.parameters["gpu_product"]
    assert selector_input.component_input_parameter == "gpu_product"
    gpu_param = spec.root.input_definitions.parameters["gpu_product"]
    assert gpu_param.default_value.string_value == DEFAULT_GPU_PRODUCT == "Quadro-RTX-8000"
    for step in ("preprocess", "evaluate", "visualize"):
        res = spec.deployment_spec["executors"][f"exec-{step}"]["container"]["resources"]
        assert "accelerator" not in res
        assert not k8s[step].tolerations


def test_deterministic_steps_are_not_retried(docs) -> None:
    from lab_pipelines.voxelflex_pipeline import DETERMINISTIC

    spec, _ = docs
    tasks = _tasks(spec)
    for step in DETERMINISTIC - {"original_voxels"}:  # that one lives in a condition's sub-DAG
        name = step.replace("_", "-")
        assert name in tasks and not tasks[name].HasField("retry_policy"), name


def test_every_step_has_resources_retries_and_secret_env(docs) -> None:
    spec, k8s = docs
    tasks = _tasks(spec)
    for step in STEPS:
        res = spec.deployment_spec["executors"][f"exec-{step}"]["container"]["resources"]
        for key in ("resourceCpuRequest", "resourceCpuLimit"):
            assert res[key]
        for key in ("resourceMemoryRequest", "resourceMemoryLimit"):
            assert res[key].endswith("Gi")
        retry = tasks[step].retry_policy
        assert retry.max_retry_count >= 1 and retry.backoff_duration and retry.backoff_factor > 1
        (secret,) = k8s[step].secret_as_env
        # the mirror sits in a condition's sub-DAG, which sees the parameter as a channel
        name = secret.secret_name_parameter.component_input_parameter
        assert name.removeprefix("pipelinechannel--") == "s3_secret_name"
        assert {(e.secret_key, e.env_var) for e in secret.key_to_env} == set(S3_SECRET_ENV.items())
    assert tasks["preprocess"].caching_options.enable_cache
    assert not tasks["train"].caching_options.enable_cache
    # a mirror reused from cache would hide a changed source; the step itself is idempotent
    assert not tasks["mirror"].caching_options.enable_cache
    # credentials never travel as parameters
    params = spec.root.input_definitions.parameters
    assert not [p for p in params if any(w in p.lower() for w in ("key", "password", "token"))]


def test_ui_form_parameters(docs) -> None:
    spec, _ = docs
    params = spec.root.input_definitions.parameters
    required = {p for p, v in params.items() if not v.is_optional}
    assert "mirror_uri" in params and "mirror_to_zarr" in params
    assert required == {
        "voxel_file",
        "aggregated_rmsf_file",
        "train_split_file",
        "val_split_file",
        "test_split_file",
    }
    for name in ("architecture", "num_epochs", "batch_size", "learning_rate"):
        assert params[name].is_optional and params[name].description
    temps = json_format.MessageToDict(params["predict_temperatures"].default_value)
    assert temps == [300.0, 350.0, 400.0]


def test_mirror_runs_only_when_asked_and_feeds_every_step(docs) -> None:
    spec, _ = docs
    tasks = _tasks(spec)
    branches = {
        frozenset(spec.components[t.component_ref.name].dag.tasks): t.trigger_policy.condition
        for t in tasks.values()
        if t.trigger_policy.condition
    }
    on = "inputs.parameter_values['pipelinechannel--mirror_to_zarr'] == true"
    gate = "inputs.parameter_values['pipelinechannel--accepted_metrics_uri'] != ''"
    one = "inputs.parameter_values['pipelinechannel--distributed_training'] == false"
    assert branches == {
        frozenset({"mirror-plan", "for-loop-2", "mirror"}): on,
        frozenset({"original-voxels"}): f"!({on})",
        # either trainer, then predict, evaluate, [gate,] visualize in its branch
        frozenset({"train", "predict", "evaluate", "condition-6", "visualize"}): one,
        frozenset(
            {"train-job", "predict-2", "evaluate-2", "condition-9", "visualize-2"}
        ): f"!({one})",
        frozenset({"evaluation-gate"}): gate,
        frozenset({"evaluation-gate-2"}): gate,
    }
    assert not spec.root.input_definitions.parameters["mirror_to_zarr"].default_value.bool_value
    for step in STEPS[1:]:
        source = tasks[step].inputs.parameters["voxel_file"]
        # dsl.OneOf(mirror, original): directly, or as a channel into a condition's sub-DAG
        producer = (
            source.task_output_parameter.producer_task
            or (
                source.component_input_parameter.removeprefix("pipelinechannel--").split("-pipe")[0]
            )
        )
        assert producer == "condition-branches-1", step


def test_mirror_fans_out_over_disjoint_writers(docs) -> None:
    """plan -> ParallelFor over the plan's items (mirror_shard) -> the finishing mirror."""
    spec, _ = docs
    tasks = _tasks(spec)
    loop = tasks["for-loop-2"]
    assert loop.parameter_iterator.items.input_parameter.endswith("mirror-plan-Output")
    assert loop.iterator_policy.parallelism_limit == 8
    assert set(spec.components[loop.component_ref.name].dag.tasks) == {"mirror-shard"}
    assert "for-loop-2" in tasks["mirror"].dependent_tasks
    params = spec.root.input_definitions.parameters
    assert params["mirror_writers"].default_value.number_value == 4


def test_evaluation_pipeline_gates_an_imported_model() -> None:
    spec_doc = next(
        yaml.safe_load_all((COMPILED_DIR / "voxelflex_evaluation_pipeline.yaml").read_text())
    )
    spec = json_format.ParseDict(spec_doc, pipeline_spec_pb2.PipelineSpec())
    tasks = _tasks(spec)
    assert set(tasks) == {
        "model-to-evaluate",
        "importer",
        "fingerprint-inputs",
        "preprocess",
        "evaluate",
        "evaluation-gate",
    }
    importer = spec.deployment_spec["executors"]["exec-importer"]["importer"]
    assert importer["artifactUri"]["runtimeParameter"] == "uri"
    # the model given, else the one the promotion record says is accepted
    uri = tasks["importer"].inputs.parameters["uri"].task_output_parameter
    assert uri.producer_task == "model-to-evaluate"
    chooser = tasks["model-to-evaluate"].inputs.parameters
    assert chooser["model_uri"].component_input_parameter == "model_uri"
    assert spec.root.input_definitions.parameters["model_uri"].is_optional
    gate_inputs = tasks["evaluation-gate"].inputs
    assert gate_inputs.artifacts["model"].task_output_artifact.producer_task == "importer"
    assert gate_inputs.artifacts["evaluation"].task_output_artifact.producer_task == "evaluate"
    assert gate_inputs.parameters["max_drop"].component_input_parameter == "max_drop"
    # deciding on a small file: a failure is not transient, and is not retried
    assert not tasks["evaluation-gate"].HasField("retry_policy")


STEP_MODULES = {
    "mirror_plan": "mirror",
    "mirror_shard": "mirror",
    "evaluation_gate": "gate",
    "voxelize_structures": "voxelize",
    "predict_structures": "predict_structure",
    "train_job": "train_job",
}


def _assert_cached_on_content(tasks, step: str) -> None:
    """`step` is cached, with the fingerprint of its inputs (an uncached task) in its key."""
    assert tasks[step].caching_options.enable_cache
    held = tasks[step].inputs.parameters["inputs_fingerprint"].task_output_parameter
    assert held.producer_task == "fingerprint-inputs"
    assert not tasks["fingerprint-inputs"].caching_options.enable_cache


def test_preprocess_is_cached_on_what_its_inputs_hold(docs) -> None:
    spec, _ = docs
    tasks = _tasks(spec)
    _assert_cached_on_content(tasks, "preprocess")
    uris = tasks["fingerprint-inputs"].inputs.parameters["uris"]
    # the voxel file as given (a mirror is made from it), the CSV and the three split files
    assert "voxel_file" in json_format.MessageToJson(uris)


def test_structure_pipeline_voxelizes_then_predicts() -> None:
    path = COMPILED_DIR / "voxelflex_structure_pipeline.yaml"
    spec = json_format.ParseDict(
        next(yaml.safe_load_all(path.read_text())), pipeline_spec_pb2.PipelineSpec()
    )
    tasks = _tasks(spec)
    assert set(tasks) == {
        "importer",
        "fingerprint-inputs",
        "voxelize-structures",
        "predict-structures",
    }
    _assert_cached_on_content(tasks, "voxelize-structures")
    voxels = tasks["predict-structures"].inputs.artifacts["voxels"].task_output_artifact
    assert voxels.producer_task == "voxelize-structures"
    params = spec.root.input_definitions.parameters
    assert not params["model_uri"].is_optional and not params["structures"].is_optional


@pytest.mark.parametrize("step", [*STEPS, *STEP_MODULES, "gpu_node_selector", "original_voxels"])
def test_components_are_thin_pinned_and_documented(step: str) -> None:
    comp = getattr(components, step)
    container = comp.component_spec.implementation.container
    assert container.image in (components.CPU_IMAGE, components.GPU_IMAGE)
    assert not container.image.endswith(":latest") and components.IMAGE_VERSION in container.image
    assert "pip install" not in " ".join(container.command)  # the image carries everything
    func = comp.python_func
    doc = inspect.getdoc(func) or ""
    assert "Args:" in doc
    for name in inspect.signature(func).parameters:
        assert f"{name}:" in doc, f"{step}: argument {name} is not documented"
    if step in (*STEPS, *STEP_MODULES):
        # the body: imports, then one call of the step's run (plus artifact glue from kfp_io)
        body = inspect.getsource(func).split('"""', 2)[2]
        tree = ast.parse(textwrap.dedent(body.lstrip("\n")))
        imported = {
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
            for alias in node.names
        }
        assert STEP_MODULES.get(step, step) in imported  # voxelflex.steps.<module>
        calls = [ast.unparse(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)]
        assert "step.run" in calls
        assert {c.split(".")[0] for c in calls} <= {"step", "kfp_io", "float"}


def test_gpu_node_selector_from_the_product_label() -> None:
    func = components.gpu_node_selector.python_func
    assert func("Quadro-RTX-8000") == {"nvidia.com/gpu.product": "Quadro-RTX-8000"}
    assert func("") == {}


def test_distributed_training_is_a_trainjob_step_fed_the_task_settings(docs) -> None:
    """Off by default; on, a TrainJob of num_nodes x gpus_per_node launched by a step whose
    GPU count, node selector and toleration KFP forwards to the job (dsl.TaskConfig), and
    whose model feeds predict, evaluate and visualize as the one-GPU train's does."""
    spec, k8s = docs
    params = spec.root.input_definitions.parameters
    assert not params["distributed_training"].default_value.bool_value
    assert params["num_nodes"].default_value.number_value == 1
    assert params["gpus_per_node"].default_value.number_value == 2
    assert params["trainer_runtime"].default_value.string_value == "torch-distributed"
    tasks = _tasks(spec)
    job = tasks["train-job"]
    for name in ("num_nodes", "gpus_per_node", "gpu_product", "s3_secret_name"):
        source = job.inputs.parameters[name].component_input_parameter
        assert source.removeprefix("pipelinechannel--") in params
    comp = spec.components[job.component_ref.name]
    fields = {pipeline_spec_pb2.TaskConfigPassthroughType.TaskConfigPassthroughTypeEnum.Name(
        p.field) for p in comp.task_config_passthroughs}  # fmt: skip
    assert fields == {"RESOURCES", "KUBERNETES_NODE_SELECTOR", "KUBERNETES_TOLERATIONS"}
    assert not any(p.apply_to_task for p in comp.task_config_passthroughs)
    res = spec.deployment_spec["executors"]["exec-train-job"]["container"]["resources"]
    assert res["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert "gpus_per_node" in res["accelerator"]["resourceCount"]  # the parameter, per node
    cfg = k8s["train-job"]
    assert _selector_source(cfg) == "gpu-node-selector"
    assert [t.key for t in cfg.tolerations] == ["nvidia.com/gpu"]
    assert len(cfg.secret_as_env) == 1  # the step copies the metadata; the nodes get the secret
    for trainer, suffix in (("train", ""), ("train-job", "-2")):
        for step in ("predict", "evaluate", "visualize"):
            model = tasks[step + suffix].inputs.artifacts["model"].task_output_artifact
            assert model.producer_task == trainer
