"""create_val_dataset: the validation molecules (subset 1) of `belka.tfr/` into their own
store `belka_val.tfr/`, so validation reads no training shard."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from belka.config import Config
from belka.data.store import BUILD, FIELDS, MANIFEST, Store, read_json, write_json, write_shard
from belka.paths import Layout
from belka.steps.generate_parquet import SUBSET_VAL
from pipekit.errors import InputDataError
from pipekit.progress import progress
from pipekit.uri import apply_storage_options, join_uri, remove_uri, uri_exists


@dataclass(frozen=True)
class ValResult:
    store: str
    molecules: int
    shards: int


def run(cfg: Config, layout: Layout | None = None) -> ValResult:
    apply_storage_options(cfg.data.storage_options)
    layout = layout or Layout.of(cfg)
    source = Store.open(layout.store)
    out = layout.val_store
    if uri_exists(join_uri(out, MANIFEST)):
        remove_uri(join_uri(out, MANIFEST))
    build = read_json(join_uri(layout.store, BUILD)) or {}
    write_json(join_uri(out, BUILD), build | {"from": layout.store})
    size = cfg.features.shard_size
    parts: list[dict[str, np.ndarray]] = []
    have = 0
    shards: list[dict[str, Any]] = []

    def flush(final: bool) -> None:
        nonlocal parts, have
        while have >= size or (final and have):
            merged = {k: np.concatenate([p[k] for p in parts]) for k in FIELDS}
            take = min(size, have)
            shards.append(write_shard(out, len(shards), {k: v[:take] for k, v in merged.items()}))
            parts = [{k: v[take:] for k, v in merged.items()}]
            have -= take

    for i in progress(range(len(source.shards)), desc="validation shards", unit="shard"):
        if source.shards[i]["by_subset"][SUBSET_VAL] == 0:
            continue
        arrays = source.read(i)
        keep = arrays["subset"] == SUBSET_VAL
        parts.append({k: v[keep] for k, v in arrays.items()})
        have += int(keep.sum())
        flush(False)
    flush(True)
    if not shards:
        raise InputDataError(
            f"{layout.store}: no validation molecules (subset 1); raise "
            "validation.heldout_block_fraction or validation.shared_fraction"
        )
    total = sum(s["rows"] for s in shards)
    write_json(join_uri(out, MANIFEST), source.manifest | {"shards": shards, "rows": total})
    return ValResult(out, total, len(shards))
