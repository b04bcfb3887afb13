"""Runs and recurring runs on a Kubeflow Pipelines API server, through `kfp.Client`.

Authentication uses KFP's own options, read from the environment and never printed:
KFP_TOKEN (a bearer token, e.g. a service-account token) or KFP_COOKIES (e.g.
`authservice_session=...` for a Dex/oauth2-proxy front door). Inside a cluster with neither,
kfp.Client uses the pod's projected service-account token.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kfp
import yaml

from pipekit.errors import ConfigError, PipelineError
from pipekit.pipeline.compile import Pipelines, compile_pipelines
from pipekit.pipeline.images import IMAGE_VERSION
from pipekit.release import DIGEST_ENV, check_released, code_digest
from pipekit.uri import uri_exists

log = logging.getLogger(__name__)

ENV_TOKEN = "KFP_TOKEN"
ENV_COOKIES = "KFP_COOKIES"


@dataclass(frozen=True)
class SubmitResult:
    run_id: str
    url: str
    state: str | None = None  # after --wait
    tasks: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)


def parse_params(pairs: list[str]) -> dict[str, Any]:
    """`["num_epochs=5", "predict_temperatures=[300, 350]"]` -> values read as YAML."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--param {pair!r} must look like name=value")
        try:
            out[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            out[key.strip()] = raw
    return out


def load_params(path: str | None, pairs: list[str]) -> dict[str, Any]:
    """Parameters from a YAML file (the commit's run config, for CI), then `--param`s."""
    params: dict[str, Any] = {}
    if path:
        if not Path(path).is_file():
            raise ConfigError(f"--params-file {path} not found")
        loaded = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"--params-file {path} must hold a mapping of parameter: value")
        params.update(loaded)
    params.update(parse_params(pairs))
    return params


UNAUTHORIZED = "set KFP_TOKEN or KFP_COOKIES"
# per released image version, the code digest it was built from (docs/runbook.md: releases)
RELEASED_FILE = Path(__file__).resolve().parents[3] / "images" / "released.json"


def _unauthorized(host: str, status: int) -> PipelineError:
    return PipelineError(f"unauthorized (HTTP {status}) at {host}: {UNAUTHORIZED}")


def connect(host: str) -> kfp.Client:
    """A client for `host`, after one request that says at once whether the server lets us
    in (kfp.Client's own check retries a refusal for half a minute, then times out)."""
    import requests

    host = host.rstrip("/")
    token, cookies = os.environ.get(ENV_TOKEN) or None, os.environ.get(ENV_COOKIES) or None
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if cookies:
        headers["Cookie"] = cookies
    try:
        answer = requests.get(f"{host}/apis/v2beta1/healthz", headers=headers, timeout=30)
    except requests.RequestException as exc:
        raise PipelineError(f"cannot reach the Kubeflow Pipelines API at {host}: {exc}") from None
    if answer.status_code in (401, 403):
        raise _unauthorized(host, answer.status_code)
    return kfp.Client(host=host, existing_token=token, cookies=cookies)


@contextmanager
def api_errors(host: str) -> Iterator[None]:
    """A refusal later on (a token that expired while waiting) is the same one line."""
    from kfp_server_api.exceptions import ApiException

    try:
        yield
    except ApiException as exc:
        if exc.status in (401, 403):
            raise _unauthorized(host, exc.status) from None
        raise


def stamp(path: str, digest: str) -> None:
    """Every step of the compiled pipeline at `path` learns the code it was compiled from
    (`PIPEKIT_CODE_DIGEST`): a step whose image holds other code refuses to run."""
    docs = list(yaml.safe_load_all(Path(path).read_text()))
    for executor in docs[0]["deploymentSpec"]["executors"].values():
        container = executor.get("container")
        if container is not None:
            env = [e for e in container.get("env", []) if e.get("name") != DIGEST_ENV]
            container["env"] = [*env, {"name": DIGEST_ENV, "value": digest}]
    Path(path).write_text(yaml.safe_dump_all(docs, sort_keys=False))


def _package(
    pipelines: Pipelines,
    pipeline: str,
    package: str | None,
    params: dict[str, Any],
    workdir: str,
    unreleased: bool = False,
) -> str:
    """The compiled YAML (the one given, or compiled now from this checkout's code, which a
    released image must hold unless `unreleased`), after checking `params` against its
    parameters, before anything is sent."""
    if package:
        if not Path(package).is_file():
            raise ConfigError(f"--package {package} not found")
        path = package
    elif pipeline not in pipelines:
        raise ConfigError(f"--pipeline must be one of {sorted(pipelines)}, not {pipeline!r}")
    else:
        if not unreleased:
            check_released(RELEASED_FILE, IMAGE_VERSION)
        path = str(compile_pipelines({pipeline: pipelines[pipeline]}, workdir)[0])
        stamp(path, code_digest())
    _check_params(path, params)
    return path


def _check_params(package: str, params: dict[str, Any]) -> None:
    spec = next(yaml.safe_load_all(Path(package).read_text()))
    known = spec["root"]["inputDefinitions"]["parameters"]
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ConfigError(f"unknown pipeline parameter(s) {unknown}; known: {sorted(known)}")
    missing = sorted(k for k, v in known.items() if not v.get("isOptional") and k not in params)
    if missing:
        raise ConfigError(f"the pipeline needs --param for {missing}")


def run_url(host: str, run_id: str) -> str:
    return f"{host.rstrip('/')}/#/runs/details/{run_id}"


def submit(
    host: str,
    params: dict[str, Any],
    pipelines: Pipelines,
    pipeline: str,
    experiment: str,
    package: str | None = None,
    run_name: str | None = None,
    service_account: str | None = None,
    wait: bool = False,
    timeout: int = 24 * 3600,
    metrics_uri: str | None = None,
    unreleased: bool = False,
    read_metrics: Callable[[str], dict[str, Any]] | None = None,
) -> SubmitResult:
    """Create a run; with `wait`, wait for it and fail unless it succeeded. `read_metrics`
    turns the metrics file the run wrote into headline numbers to show."""
    with tempfile.TemporaryDirectory() as workdir, api_errors(host):
        path = _package(pipelines, pipeline, package, params, workdir, unreleased)
        client = connect(host)
        created = client.create_run_from_pipeline_package(
            path,
            arguments=params,
            run_name=run_name,
            experiment_name=experiment,
            service_account=service_account,
        )
    run_id = created.run_id
    url = run_url(host, run_id)
    log.info("created run %s: %s", run_id, url)
    if not wait:
        return SubmitResult(run_id, url)
    with api_errors(host):
        run = client.wait_for_run_completion(run_id, timeout=timeout)
    details = getattr(run, "run_details", None)
    tasks = {t.display_name: t.state for t in (getattr(details, "task_details", None) or [])}
    if run.state != "SUCCEEDED":
        failed = [name for name, state in tasks.items() if state not in ("SUCCEEDED", "SKIPPED")]
        raise PipelineError(
            f"run {run_id} ended {run.state} (tasks not succeeded: {failed}): {url}"
        )
    # KFP's run API carries states, not metric values: read them from the metrics file the
    # run wrote (the evaluation pipeline's accepted metrics, or --metrics-uri)
    metrics: dict[str, Any] = {}
    metrics_uri = metrics_uri or params.get("accepted_metrics_uri")
    if metrics_uri and read_metrics is not None:
        try:
            metrics = read_metrics(metrics_uri) if uri_exists(metrics_uri) else {}
        except Exception as exc:  # the run succeeded; failing to show numbers must not fail it
            log.warning("could not read metrics from %s: %s", metrics_uri, exc)
    return SubmitResult(run_id, url, run.state, tasks, metrics)


def kfp_cron(cron: str) -> str:
    """KFP schedules take six cron fields (seconds first); accept the usual five too."""
    fields = cron.split()
    if len(fields) == 5:
        return "0 " + cron.strip()
    if len(fields) == 6:
        return cron.strip()
    raise ConfigError(f"--cron {cron!r} must have 5 fields (min hour day month weekday) or 6")


def schedule(
    host: str,
    cron: str,
    params: dict[str, Any],
    pipelines: Pipelines,
    pipeline: str,
    experiment: str,
    name: str,
    package: str | None = None,
    service_account: str | None = None,
    unreleased: bool = False,
) -> str:
    """Create a recurring run (no catch-up, one at a time); returns its id."""
    with tempfile.TemporaryDirectory() as workdir, api_errors(host):
        path = _package(pipelines, pipeline, package, params, workdir, unreleased)
        client = connect(host)
        exp = client.create_experiment(experiment)
        job = client.create_recurring_run(
            experiment_id=exp.experiment_id,
            job_name=name,
            cron_expression=kfp_cron(cron),
            max_concurrency=1,
            no_catchup=True,
            params=params,
            pipeline_package_path=path,
            service_account=service_account,
        )
    log.info("created recurring run %s (%s)", job.recurring_run_id, cron)
    return job.recurring_run_id
