"""Model registry: the training config names an architecture; checkpoints record it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from pipekit.errors import ConfigError

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _MODELS[name] = fn
        return fn

    return deco


def list_models() -> list[str]:
    return sorted(_MODELS)


def create_model(name: str, **hparams: Any) -> nn.Module:
    if name not in _MODELS:
        raise ConfigError(
            f"config key 'training.architecture': {name!r} is not one of {list_models()}"
        )
    return _MODELS[name](**hparams)
