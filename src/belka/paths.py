"""Where each step reads and writes, from the config (the plan's file names)."""

from __future__ import annotations

from dataclasses import dataclass

from belka.config import Config
from pipekit.uri import join_uri

BELKA_PARQUET = "belka.parquet"
VOCAB = "vocab.txt"
STORE = "belka.tfr"  # a folder of compressed shards; the plan's TFRecord name kept
VAL_STORE = "belka_val.tfr"
SUBMISSION = "submission.csv"
EVALUATION = "evaluation_metrics.json"
VAL_PREDICTIONS = "val_predictions.parquet"
BEST_MODEL = "best_model.pt"
LATEST_MODEL = "latest_model.pt"
HISTORY = "training_history.json"
LOG = "belka.log"


@dataclass(frozen=True)
class Layout:
    root: str
    working: str
    vocab: str

    @classmethod
    def of(cls, cfg: Config) -> Layout:
        working = cfg.data.working.rstrip("/")
        vocab = cfg.data.vocab or join_uri(working, VOCAB)
        return cls(cfg.data.root.rstrip("/"), working, vocab)

    def raw(self, name: str) -> str:
        return join_uri(self.root, name)

    def out(self, *parts: str) -> str:
        return join_uri(self.working, *parts)

    @property
    def parquet(self) -> str:
        return self.out(BELKA_PARQUET)

    @property
    def store(self) -> str:
        return self.out(STORE)

    @property
    def val_store(self) -> str:
        return self.out(VAL_STORE)

    def model_dir(self, mode: str) -> str:
        return self.out("models", mode)

    @property
    def log(self) -> str:
        return self.out("logs", LOG)
