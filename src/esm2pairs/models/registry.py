"""The pair classifiers' registry (named by `training.architecture`)."""

from pipekit.models import ModelRegistry

MODELS = ModelRegistry("training.architecture")
register_model = MODELS.register
create_model = MODELS.create
list_models = MODELS.names
