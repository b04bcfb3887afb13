"""Model registry: `create_model(name, **kw)`; every model maps voxels + temperature to RMSF."""

from voxelflex.models import densenet3d, dilated_resnet, multipath  # noqa: F401  (registers)
from voxelflex.models.registry import create_model, list_models, register_model

__all__ = ["create_model", "list_models", "register_model"]
