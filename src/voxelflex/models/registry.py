"""timm-style registry: a name maps to a builder taking keyword hyperparameters."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from pipekit.errors import ConfigError

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
F = TypeVar("F", bound=Callable[..., nn.Module])


def register_model(name: str) -> Callable[[F], F]:
    def deco(fn: F) -> F:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = fn
        return fn

    return deco


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def create_model(name: str, **kwargs: Any) -> nn.Module:
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model architecture {name!r}; known: {', '.join(list_models())}")
    return _REGISTRY[name](**kwargs)
