"""Images and Kubernetes manifests, checked offline (no Docker engine or cluster here)."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from dockerfile_parse import DockerfileParser

import pipekit
from voxelflex.components import CPU_IMAGE, GPU_IMAGE, IMAGE_VERSION

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = {"cpu": ROOT / "images" / "Dockerfile", "cuda": ROOT / "images" / "Dockerfile.cuda"}
BASE = ROOT / "manifests" / "base"
K8S_VERSION = "1.32.0"


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _parse(path: Path) -> DockerfileParser:
    parser = DockerfileParser(fileobj=path.open("rb"))
    assert parser.structure, f"{path} has no instructions"
    return parser


def _args(parser: DockerfileParser) -> dict[str, str]:
    out = {}
    for ins in parser.structure:
        if ins["instruction"] == "ARG" and "=" in ins["value"]:
            key, value = ins["value"].split("=", 1)
            out[key] = value
    return out


def _python_layer(parser: DockerfileParser) -> list[tuple[str, str]]:
    """The instructions from the first use of images/install.sh on: the Python layer."""
    ins = [
        (i["instruction"], i["value"]) for i in parser.structure if i["instruction"] != "COMMENT"
    ]
    first = next(k for k, (kind, value) in enumerate(ins) if "images/install.sh" in value)
    return ins[first:]


# torch releases and the CUDA variants PyTorch publishes for each, with the GPU
# architectures of each variant's Linux x86 builds (pytorch/pytorch RELEASE.md: "Release
# Compatibility Matrix" and "PyTorch CUDA Support Matrix" for 2.12-2.14). A torch bump
# fails here until its row is added.
TORCH_CUDA_VARIANTS = {"2.13": {"cu126", "cu130", "cu132"}}
CUDA_ARCHITECTURES = {
    "cu126": {"5.0", "6.0", "7.0", "7.5", "8.0", "8.6", "9.0"},
    "cu130": {"7.5", "8.0", "8.6", "9.0", "10.0", "12.0"},
    "cu132": {"7.5", "8.0", "8.6", "9.0", "10.0", "12.0"},
}
TURING = "7.5"  # the Quadro RTX 8000


@pytest.mark.parametrize("kind", DOCKERFILES)
def test_dockerfile_parses_and_pins_versions(kind: str) -> None:
    parser = _parse(DOCKERFILES[kind])
    known = {"FROM", "ARG", "ENV", "RUN", "WORKDIR", "COPY", "USER", "CMD", "LABEL", "COMMENT"}
    assert {i["instruction"] for i in parser.structure} <= known
    args = _args(parser)
    # production's base is the pinned default of BASE (images/build.sh passes another
    # only where no registry can be reached)
    first = next(i for i in parser.structure if i["instruction"] != "COMMENT")
    assert first["instruction"] == "ARG" and first["value"].startswith("BASE=")
    base = args["BASE"]
    assert re.fullmatch(r"[\w./-]+:[\w.-]+", base) and not base.endswith(":latest"), base
    project = _pyproject()["project"]
    assert args["PIPELINES_VERSION"] == IMAGE_VERSION == project["version"] == pipekit.__version__
    torch_pin = next(d for d in project["dependencies"] if d.startswith("torch=="))
    assert f"torch=={args['TORCH_VERSION']}" == torch_pin
    runs = " ".join(i["value"] for i in parser.structure if i["instruction"] == "RUN")
    for stage in ("torch", "deps", "project"):
        assert f"images/install.sh {stage}" in runs.replace(
            "/tmp/build/install.sh", "images/install.sh"
        )
    users = [i["value"] for i in parser.structure if i["instruction"] == "USER"]
    assert users and users[-1] == "1000", "the image must end as its non-root user, uid 1000"


def test_both_images_share_one_python_layer() -> None:
    """The CUDA image cannot be built here (its base is not reachable): what can be checked
    is that after its base and OS Python it runs exactly the CPU image's instructions."""
    cpu, cuda = (_parse(DOCKERFILES[k]) for k in ("cpu", "cuda"))
    assert _python_layer(cpu) == _python_layer(cuda)
    for parser in (cpu, cuda):
        env = " ".join(i["value"] for i in parser.structure if i["instruction"] == "ENV")
        assert "PATH=/opt/venv/bin:$PATH" in env and "HOME=/home/pipelines" in env
        runs = " ".join(i["value"] for i in parser.structure if i["instruction"] == "RUN")
        assert "useradd --create-home --home-dir /home/pipelines --uid 1000" in runs


def test_install_script_installs_with_the_constraints_and_the_image_extras() -> None:
    script = (ROOT / "images" / "install.sh").read_text()
    assert '-c "$build/constraints.txt"' in script
    assert 'extras["s3"] + extras["kfp"]' in script  # kfp is in the image: no pip install at run
    assert "--no-deps ." in script
    assert "https://download.pytorch.org/whl/${TORCH_VARIANT}" in script


def test_cuda_image_supports_turing_with_a_published_torch_build() -> None:
    parser = _parse(DOCKERFILES["cuda"])
    args = _args(parser)
    m = re.fullmatch(r"nvidia/cuda:(\d+)\.(\d+)\.\d+-cudnn-runtime-ubuntu[\d.]+", args["BASE"])
    assert m, args["BASE"]
    variant = args["TORCH_VARIANT"]
    assert variant == f"cu{m[1]}{m[2]}", "the wheel's CUDA must be the base image's"
    minor = ".".join(args["TORCH_VERSION"].split(".")[:2])
    assert variant in TORCH_CUDA_VARIANTS[minor], f"torch {minor} has no {variant} build"
    assert TURING in CUDA_ARCHITECTURES[variant]
    assert _args(_parse(DOCKERFILES["cpu"]))["TORCH_VARIANT"] == "cpu"


def test_component_images_name_the_package_version() -> None:
    assert CPU_IMAGE.endswith(f":{IMAGE_VERSION}")
    assert GPU_IMAGE.endswith(f":{IMAGE_VERSION}-cuda")
    for path in DOCKERFILES.values():
        tag = CPU_IMAGE if path.name == "Dockerfile" else GPU_IMAGE
        assert f"-t {tag} ." in path.read_text(), f"{path} documents a different tag"


def _resources() -> list[Path]:
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    return [BASE / name for name in kustomization["resources"]]


def _docs(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


def test_every_manifest_validates_strictly() -> None:
    resources = _resources()
    assert sorted(p.name for p in BASE.glob("*.yaml")) == sorted(
        [*(p.name for p in resources), "kustomization.yaml"]
    ), "a manifest in manifests/base is not listed in kustomization.yaml"
    kinds = set()
    for path in resources:
        for doc in _docs(path.read_text()):
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
            kinds.add(doc["kind"])
    expected = {"ServiceAccount", "Role", "RoleBinding", "Secret", "Deployment", "Service"}
    assert expected | {"PersistentVolumeClaim"} <= kinds


def test_strict_validation_rejects_a_misspelt_field() -> None:
    doc = _docs((BASE / "serviceaccount.yaml").read_text())[0]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate({**doc, "metdata": {}}, K8S_VERSION, strict=True)


def test_secret_is_a_template() -> None:
    (secret,) = _docs((BASE / "s3-secret.yaml").read_text())
    from pipekit.pipeline.tasks import S3_SECRET
    from pipekit.uri import S3_SECRET_ENV

    assert secret["metadata"]["name"] == S3_SECRET
    assert set(secret["stringData"]) == set(S3_SECRET_ENV)
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert secret["stringData"][key].startswith("REPLACE-ME")


def test_kustomize_renders() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        # equivalent offline check: every listed resource exists and parses
        rendered = [d for p in _resources() for d in _docs(p.read_text())]
    else:
        out = subprocess.run(
            [kubectl, "kustomize", str(BASE)], capture_output=True, text=True, check=True
        )
        rendered = _docs(out.stdout)
        namespace = yaml.safe_load((BASE / "kustomization.yaml").read_text())["namespace"]
        assert {d["metadata"]["namespace"] for d in rendered} == {namespace}
        assert all(
            d["metadata"]["labels"]["app.kubernetes.io/part-of"] == "lab-pipelines"
            for d in rendered
        )
    for doc in rendered:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    names = {(d["kind"], d["metadata"]["name"]) for d in rendered}
    assert ("Secret", "lab-pipelines-s3") in names and ("Service", "lab-pipelines-minio") in names


def test_every_subpackage_is_installed() -> None:
    """pyproject lists packages by hand (components/<system>/ and pipelines/ map into
    <system>.components and lab_pipelines); a subpackage missing there would be absent from
    the image."""
    listed = set(_pyproject()["tool"]["setuptools"]["packages"])
    found = {
        ".".join(p.parent.relative_to(ROOT / "src").parts)
        for p in (ROOT / "src").glob("*/**/*.py")
        if "egg-info" not in str(p)
    }
    kfp_faces = {f"{p.name}.components" for p in (ROOT / "components").iterdir() if p.is_dir()}
    # folders of data only, listed so setuptools installs them without a warning
    data = {"lab_pipelines.compiled", "esm2pairs.config.bundles"}
    assert found | kfp_faces | {"lab_pipelines"} | data == listed


def test_monitoring_manifests_select_the_scraped_steps() -> None:
    from pipekit.monitoring import METRICS_PORT

    (monitor,) = _docs((ROOT / "manifests" / "monitoring" / "podmonitor.yaml").read_text())
    assert monitor["kind"] == "PodMonitor"
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert str(endpoint["targetPort"]) == METRICS_PORT and endpoint["path"] == "/metrics"
    platform = list(
        yaml.safe_load_all(
            (ROOT / "pipelines" / "compiled" / "voxelflex_pipeline.yaml").read_text()
        )
    )[1]
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for step in ("train", "predict", "evaluate"):
        meta = executors[f"exec-{step}"]["podMetadata"]
        assert monitor["spec"]["selector"]["matchLabels"].items() <= meta["labels"].items()
        assert meta["annotations"]["prometheus.io/port"] == METRICS_PORT
    kubectl = shutil.which("kubectl")
    if kubectl is not None:
        out = subprocess.run(
            [kubectl, "kustomize", str(ROOT / "manifests" / "monitoring")],
            capture_output=True,
            text=True,
            check=True,
        )
        assert "PodMonitor" in out.stdout


def test_runner_role_may_run_trainjobs() -> None:
    """The verbs `steps.train_job.KubernetesCluster` uses, granted to the pipeline runner."""
    from pipekit.trainjob import GROUP, PLURAL

    role = next(d for d in _docs((BASE / "rbac.yaml").read_text()) if d["kind"] == "Role")

    def allowed(group: str, resource: str) -> set[str]:
        return {
            verb
            for rule in role["rules"]
            if group in rule["apiGroups"] and resource in rule["resources"]
            for verb in rule["verbs"]
        }

    assert {"create", "get", "delete"} <= allowed(GROUP, PLURAL) and GROUP == "trainer.kubeflow.org"
    assert PLURAL == "trainjobs"
    assert {"list", "get"} <= allowed("", "pods") and "get" in allowed("", "pods/log")


def _pod_specs(doc: dict) -> list[dict]:
    """The pod specs a workload manifest makes (Deployment, StatefulSet, Job, Pod)."""
    if doc["kind"] == "Pod":
        return [doc["spec"]]
    template = doc.get("spec", {}).get("template")
    return [template["spec"]] if template else []


def assert_hardened(pod: dict, where: str, read_only_root: bool = True) -> None:
    """The restricted Pod Security profile, checked offline: not root, no privilege
    escalation, every capability dropped, RuntimeDefault seccomp (pod or container)."""
    pod_sec = pod.get("securityContext", {})
    for c in pod["containers"]:
        sec = c.get("securityContext", {})
        name = f"{where}/{c['name']}"
        assert sec.get("runAsNonRoot", pod_sec.get("runAsNonRoot")) is True, name
        assert sec.get("allowPrivilegeEscalation") is False, name
        assert sec.get("capabilities", {}).get("drop") == ["ALL"], name
        seccomp = sec.get("seccompProfile", pod_sec.get("seccompProfile", {}))
        assert seccomp.get("type") == "RuntimeDefault", name
        assert not sec.get("privileged"), name
        if read_only_root:
            assert sec.get("readOnlyRootFilesystem") is True, name


def test_every_workload_manifest_is_hardened() -> None:
    pods = [
        (f"{path.name}:{doc['metadata']['name']}", spec)
        for path in _resources()
        for doc in _docs(path.read_text())
        for spec in _pod_specs(doc)
    ]
    assert pods  # MinIO at least
    for where, spec in pods:
        assert_hardened(spec, where)


def test_trainjob_nodes_are_hardened() -> None:
    from pipekit.trainjob import TrainJobSpec, trainjob_body

    spec = TrainJobSpec(
        name="j", namespace="ns", image="img:1", config_uri="s3://b/run/c.yaml", num_nodes=2,
        gpus_per_node=1, runtime="torch-distributed", gpu_product="Quadro-RTX-8000",
        command=("torchrun", "-m", "belka", "--step", "train_model"),
    )  # fmt: skip
    body = trainjob_body(spec)
    patch = body["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]
    pod = patch["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]
    # caches go under $HOME and /tmp: the root filesystem stays writable for training
    assert_hardened(pod, "trainjob node", read_only_root=False)


def test_runner_role_grants_only_what_the_steps_use() -> None:
    role = next(d for d in _docs((BASE / "rbac.yaml").read_text()) if d["kind"] == "Role")
    granted = {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert not {g for g in granted if g[1] == "persistentvolumeclaims"}  # no volumes used
    assert {v for g, r, v in granted if r == "trainjobs"} == {"create", "get", "delete"}
    assert not {g for g in granted if g[2] in ("*", "escalate", "bind", "impersonate")}
    secrets = [r for r in role["rules"] if "secrets" in r["resources"]]
    assert all(r.get("resourceNames") == ["lab-pipelines-s3"] for r in secrets)


def test_the_retraining_workflow_is_least_privilege() -> None:
    import re

    text = (ROOT / ".github" / "workflows" / "retrain.yml").read_text()
    flow = yaml.safe_load(text)
    assert flow["permissions"] == {"contents": "read"}
    steps = [s for job in flow["jobs"].values() for s in job["steps"]]
    for step in steps:
        # an expression in a script is a script injection: inputs come in through env
        assert "${{" not in step.get("run", ""), step.get("name")
        if "uses" in step:  # actions pinned by commit, not by a tag that can move
            assert re.fullmatch(r"[\w./-]+@[0-9a-f]{40}", step["uses"]), step["uses"]
    token_steps = [s for s in steps if "KFP_TOKEN" in s.get("env", {})]
    assert len(token_steps) == 1 and "voxelflex pipeline submit" in token_steps[0]["run"]


def test_steps_never_use_the_object_store_root() -> None:
    """MinIO's root credentials come from their own secret, which no step and no pipeline
    reads; the setup Job gives the steps' user the voxelflex bucket and nothing else."""
    import json

    minio = next(d for d in _docs((BASE / "minio.yaml").read_text()) if d["kind"] == "Deployment")
    env = {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for e in _pod_specs(minio)[0]["containers"][0]["env"]
    }
    assert {ref["name"] for ref in env.values()} == {"lab-pipelines-minio-root"}
    (root,) = _docs((BASE / "minio-root-secret.yaml").read_text())
    assert all(v.startswith("REPLACE-ME") for v in root["stringData"].values())
    compiled = "".join(p.read_text() for p in (ROOT / "pipelines" / "compiled").glob("*.yaml"))
    assert "lab-pipelines-minio-root" not in compiled and "lab-pipelines-s3" in compiled
    setup = {d["kind"]: d for d in _docs((BASE / "minio-setup.yaml").read_text())}
    policy = json.loads(setup["ConfigMap"]["data"]["bucket-policy.json"])
    resources = {r for s in policy["Statement"] for r in s["Resource"]}
    assert resources == {"arn:aws:s3:::voxelflex", "arn:aws:s3:::voxelflex/*"}
    assert not {a for s in policy["Statement"] for a in s["Action"] if a.startswith("s3:*")}
