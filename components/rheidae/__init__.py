"""KFP components of the Rheidae pipeline; each calls `rheidae.steps.<step>.run`."""

from rheidae.components.evaluate import evaluate
from rheidae.components.preprocess import preprocess
from rheidae.components.train import train
from rheidae.components.visualize import visualize

__all__ = ["evaluate", "preprocess", "train", "visualize"]
