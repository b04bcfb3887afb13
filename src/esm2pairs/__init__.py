"""ESM-2 embedding cache and segment-pair classifier: protein language-model embeddings in a
master cache deduplicated by sequence, and a classifier on frozen embeddings that tells
whether two segments' proteins come from the same isolate."""

__version__ = "0.1.0"
