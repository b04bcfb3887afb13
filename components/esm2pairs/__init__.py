"""KFP components of the ESM-2 pipeline, one per step; each calls `esm2pairs.steps.<step>.run`."""

from esm2pairs.components.embed import embed, embed_plan, embed_shard
from esm2pairs.components.evaluate import evaluate
from esm2pairs.components.pairs import pairs
from esm2pairs.components.preprocess import preprocess
from esm2pairs.components.train import train
from esm2pairs.components.visualize import visualize

__all__ = [
    "embed",
    "embed_plan",
    "embed_shard",
    "evaluate",
    "pairs",
    "preprocess",
    "train",
    "visualize",
]
