"""timm-style model registries: a name maps to a builder taking keyword hyperparameters.
Each system keeps its own registry; a checkpoint records the name it was built from."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from pipekit.errors import ConfigError

F = TypeVar("F", bound=Callable[..., nn.Module])


class ModelRegistry:
    def __init__(self, key: str) -> None:
        self.key = key  # the config key that names an architecture, for errors
        self._builders: dict[str, Callable[..., nn.Module]] = {}

    def register(self, name: str) -> Callable[[F], F]:
        def deco(fn: F) -> F:
            if name in self._builders:
                raise ValueError(f"model {name!r} registered twice")
            self._builders[name] = fn
            return fn

        return deco

    def names(self) -> list[str]:
        return sorted(self._builders)

    def create(self, name: str, **kwargs: Any) -> nn.Module:
        if name not in self._builders:
            raise ConfigError(
                f"config key '{self.key}': unknown model architecture {name!r}; known: "
                f"{', '.join(self.names())}"
            )
        return self._builders[name](**kwargs)
