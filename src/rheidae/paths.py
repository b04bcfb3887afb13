"""File names users and scripts rely on."""

from __future__ import annotations

from pipekit.uri import join_uri

COMBINED = "preprocessed_all.h5"
FAILED_RUNS = "failed_runs.txt"
BEST_MODEL = "best_model.pt"
LATEST_MODEL = "latest_model.pt"
HISTORY = "training_history.json"


def per_run(out_dir: str, source_name: str) -> str:
    stem = source_name.rsplit(".", 1)[0]
    return join_uri(out_dir, f"{stem}_preprocessed.h5")


def combined(out_dir: str) -> str:
    return join_uri(out_dir, COMBINED)
