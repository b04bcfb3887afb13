"""Pair classifiers on frozen embeddings: a registry and `create_model(name, **hparams)`."""

from esm2pairs.models.pair_mlp import PairMLP
from esm2pairs.models.registry import create_model, list_models

__all__ = ["PairMLP", "create_model", "list_models"]
