"""Belka's side of the KFP glue: a component's config from the pipeline's `settings` (the
config's sections) and a Layout whose every location is an artifact folder."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from belka.config import SCHEMA, Config
from belka.paths import BELKA_PARQUET, BEST_MODEL, STORE, VAL_STORE, VOCAB, Layout
from pipekit.errors import ConfigError
from pipekit.kfp_io import Location, component_settings, location
from pipekit.logging_setup import setup_logging
from pipekit.progress import set_progress
from pipekit.uri import apply_storage_options, join_uri

# where data lives is the pipeline's parameters' and artifacts' to say
OWNED_KEYS = ("data.root", "data.working", "data.vocab")


def folder(artifact: Location) -> str:
    return location(artifact).rstrip("/")


def component_config(
    settings: Mapping[str, Any], raw_dir: str, out: Location, log_folder: Location | None = None
) -> Config:
    """The config a component runs with, writing to `out` (its output folder, or where it
    works: `pipekit.kfp_io.work_location`); it logs into `log_folder` (default `out`)."""
    out_dir = folder(out)
    values = component_settings(settings, (), run_dir=out_dir)
    data = values.setdefault("data", {})
    clash = [k for k in OWNED_KEYS if k.split(".")[1] in data]
    if clash:
        raise ConfigError(f"pipeline settings may not set {clash}: the artifacts say where it is")
    data.update(root=raw_dir or ".", working=out_dir)
    cfg = SCHEMA.from_dict(values, "pipeline settings")
    apply_storage_options(cfg.data.storage_options)
    logs = folder(log_folder) if log_folder is not None else out_dir
    setup_logging(cfg.logging.level, join_uri(logs, "logs", "belka.log"))
    set_progress(cfg.logging.show_progress)
    return cfg


def layout(
    cfg: Config,
    *,
    molecules: Location | None = None,
    vocab: Location | None = None,
    store: Location | None = None,
    val_store: Location | None = None,
    models: Mapping[str, Location] | None = None,
) -> Layout:
    """The config's layout with the given artifacts' files in place of `data.working`'s."""
    where: dict[str, Any] = {}
    if molecules is not None:
        where["parquet"] = join_uri(folder(molecules), BELKA_PARQUET)
    if vocab is not None:
        where["vocab"] = join_uri(folder(vocab), VOCAB)
    if store is not None:
        where["store"] = join_uri(folder(store), STORE)
    if val_store is not None:
        where["val_store"] = join_uri(folder(val_store), VAL_STORE)
    return Layout.of(cfg, **where).with_models(**{m: folder(a) for m, a in (models or {}).items()})


def best_model(artifact: Location) -> str:
    return join_uri(folder(artifact), BEST_MODEL)


def train_metrics(res: Any) -> dict[str, float]:
    """What a training step (one pod or a TrainJob) shows in the Kubeflow UI."""
    values = {
        "best_val_loss": res.best_val_loss,
        "best_epoch": res.best_epoch,
        "epochs_run": res.epochs_run,
        "molecules_per_s": res.samples_per_s,
    }
    if "val_map" in res.val_metrics:
        values["val_map"] = res.val_metrics["val_map"]
    return values
