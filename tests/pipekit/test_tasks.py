"""Task settings: they reach the compiled spec without KFP's stack walk, and a setting on a
task that has no container of its own still fails with KFP's own message."""

# no `from __future__ import annotations`: KFP reads the components' annotations as types
import inspect
from pathlib import Path

import pytest
import yaml
from kfp import compiler, dsl

from pipekit.pipeline.tasks import configure


@dsl.component(base_image="python:3.11")
def _echo(text: str) -> str:
    return text


@dsl.pipeline(name="inner")
def _inner(text: str) -> str:
    return _echo(text=text).output


def test_settings_reach_the_spec_without_reading_the_stack(tmp_path: Path, monkeypatch) -> None:
    def no_stack(*args, **kwargs):
        raise AssertionError("inspect.stack() reads the source of every frame")

    monkeypatch.setattr(inspect, "stack", no_stack)

    @dsl.pipeline(name="settings")
    def settings() -> None:
        configure(_echo(text="hi"), ("1", "2", "3Gi", "4Gi"), retry=True, secret_name=None)

    path = tmp_path / "settings.yaml"
    compiler.Compiler().compile(settings, str(path))
    spec = yaml.safe_load(path.read_text())
    res = spec["deploymentSpec"]["executors"]["exec-echo"]["container"]["resources"]
    assert (res["cpuRequest"], res["cpuLimit"]) == (1.0, 2.0)
    assert res["resourceMemoryLimit"] == "4Gi"
    assert spec["root"]["dag"]["tasks"]["echo"]["retryPolicy"]["maxRetryCount"] == 2


def test_a_setting_on_a_pipeline_used_as_a_component_names_the_setting() -> None:
    with pytest.raises(ValueError, match=r"^set_cpu_limit can only be used on single-step"):

        @dsl.pipeline(name="outer")
        def outer() -> None:
            _inner(text="hi").set_cpu_limit("1")
