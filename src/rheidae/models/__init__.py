"""The residual model: an MLP 48 -> 24 (registry: `model.architecture`)."""

from pipekit.models import ModelRegistry
from rheidae.models.mlp import ResidualMLP

MODELS = ModelRegistry("model.architecture")
MODELS.register("residual_mlp")(ResidualMLP)
create_model = MODELS.create

__all__ = ["MODELS", "ResidualMLP", "create_model"]
