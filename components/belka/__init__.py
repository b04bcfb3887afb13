"""KFP components of the Belka pipeline; each calls `belka.steps.<step>.run`."""

from belka.components.create_val_dataset import create_val_dataset
from belka.components.generate_parquet import generate_parquet
from belka.components.get_vocab import get_vocab
from belka.components.make_dataset import make_dataset, make_dataset_part, make_dataset_plan
from belka.components.make_submission import make_submission
from belka.components.train_job import train_job
from belka.components.train_model import train_model
from belka.components.visualize import visualize

__all__ = [
    "create_val_dataset",
    "generate_parquet",
    "get_vocab",
    "make_dataset",
    "make_dataset_part",
    "make_dataset_plan",
    "make_submission",
    "train_job",
    "train_model",
    "visualize",
]
