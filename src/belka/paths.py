"""Where each step reads and writes, from the config (the plan's file names)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

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
    """Every location a step reads or writes. From the config, all sit in `data.working`;
    a pipeline gives each step's outputs their own artifact folder instead."""

    root: str
    working: str  # this step's reports and logs
    parquet: str
    vocab: str
    store: str
    val_store: str
    models: tuple[tuple[str, str], ...]  # (mode, folder)

    @classmethod
    def of(cls, cfg: Config, **where: Any) -> Layout:
        working = cfg.data.working.rstrip("/")
        models = tuple((m, join_uri(working, "models", m)) for m in ("mlm", "fps", "clf"))
        base = cls(
            root=cfg.data.root.rstrip("/"),
            working=working,
            parquet=join_uri(working, BELKA_PARQUET),
            vocab=cfg.data.vocab or join_uri(working, VOCAB),
            store=join_uri(working, STORE),
            val_store=join_uri(working, VAL_STORE),
            models=models,
        )
        return replace(base, **where)

    def with_models(self, **folders: str) -> Layout:
        """This layout with the named modes' model folders at `folders` instead."""
        return replace(self, models=tuple((dict(self.models) | folders).items()))

    def raw(self, name: str) -> str:
        return join_uri(self.root, name)

    def out(self, *parts: str) -> str:
        return join_uri(self.working, *parts)

    def model_dir(self, mode: str) -> str:
        return dict(self.models)[mode]

    @property
    def log(self) -> str:
        return self.out("logs", LOG)
