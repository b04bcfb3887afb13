"""VoxelFlex's model registry (named by `model.architecture`)."""

from pipekit.models import ModelRegistry

MODELS = ModelRegistry("model.architecture")
register_model = MODELS.register
create_model = MODELS.create
list_models = MODELS.names
