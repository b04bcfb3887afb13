"""make_dataset: belka.parquet -> the feature store `belka.tfr/` (token ids, ECFP bits,
labels), one shard per `features.shard_size` molecules, featurized on `system.n_workers`
processes. A re-run keeps the shards a killed run finished; molecules RDKit cannot parse
are skipped and listed in `failed_molecules.txt`."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from belka import PROTEINS
from belka.config import Config
from belka.data.store import (
    BUILD,
    FORMAT_VERSION,
    MANIFEST,
    entry,
    read_json,
    shard_name,
    write_json,
    write_shard,
)
from belka.features import Featurizer
from belka.parallel import Pool
from belka.paths import Layout
from belka.tokenizer import Vocab
from pipekit.atomic import replacing_uri
from pipekit.faults import crashpoint
from pipekit.fingerprint import content_digest
from pipekit.progress import progress
from pipekit.uri import (
    apply_storage_options,
    join_uri,
    open_uri,
    remove_uri,
    require_file,
    uri_exists,
)

log = logging.getLogger(__name__)

COLUMNS = [
    "mol_id",
    "molecule_smiles",
    *[f"binds_{p}" for p in PROTEINS],
    "subset",
    "shared_blocks",
]


@dataclass(frozen=True)
class DatasetResult:
    store: str
    molecules: int
    shards: int
    reused_shards: int
    skipped: int
    truncated: int


def _featurizer(tokens: list[str], max_length: int, radius: int, bits: int) -> Featurizer:
    return Featurizer(Vocab(tokens), max_length, radius, bits)


def _shards(uri: str, size: int) -> Iterator[pa.Table]:
    """belka.parquet in tables of exactly `size` rows (the last one shorter)."""
    pending: list[pa.RecordBatch] = []
    have = 0
    for batch in pq.ParquetFile(open_uri(uri)).iter_batches(batch_size=size, columns=COLUMNS):
        pending.append(batch)
        have += batch.num_rows
        while have >= size:
            table = pa.Table.from_batches(pending).combine_chunks()
            yield table.slice(0, size)
            rest = table.slice(size)
            pending, have = rest.to_batches(), rest.num_rows
    if have:
        yield pa.Table.from_batches(pending).combine_chunks()


def _arrays(table: pa.Table, feats: list, ok: np.ndarray, cfg: Config, dtype) -> dict:
    n = int(ok.sum())
    labels = np.stack(
        [table.column(f"binds_{p}").to_numpy(zero_copy_only=False) for p in PROTEINS], axis=1
    )
    labels = np.where(np.isnan(labels.astype(float)), -1, labels).astype(np.int8)
    shared = table.column("shared_blocks").to_pandas()
    shared = np.where(shared.isna(), -1, shared.fillna(False).astype(int)).astype(np.int8)
    good = [f for f in feats if f is not None]
    return {
        "tokens": np.stack([f[0] for f in good]).astype(dtype)
        if n
        else np.zeros((0, cfg.model.max_length), dtype),
        "ecfp": np.stack([f[1] for f in good])
        if n
        else np.zeros((0, cfg.features.ecfp_bits // 8), np.uint8),
        "labels": labels[ok],
        "mol_id": table.column("mol_id").to_numpy()[ok].astype(np.int64),
        "subset": table.column("subset").to_numpy()[ok].astype(np.int8),
        "shared": shared[ok],
    }


def run(cfg: Config, layout: Layout | None = None) -> DatasetResult:
    apply_storage_options(cfg.data.storage_options)
    layout = layout or Layout.of(cfg)
    require_file(layout.parquet, "belka.parquet (run --step generate_parquet first)")
    vocab = Vocab.load(layout.vocab)
    f = cfg.features
    build = {
        "version": FORMAT_VERSION,
        # the bytes, not the file's time: under the KFP launcher every attempt gets a fresh
        # download of the same parquet, and must still reuse the shards a killed one wrote
        "source": content_digest(layout.parquet),
        "vocab_digest": vocab.digest(),
        "vocab_size": len(vocab),
        "max_length": cfg.model.max_length,
        "ecfp_radius": f.ecfp_radius,
        "ecfp_bits": f.ecfp_bits,
        "shard_size": f.shard_size,
    }
    store = layout.store
    reuse = read_json(join_uri(store, BUILD)) == build
    if not reuse:
        if uri_exists(join_uri(store, MANIFEST)):  # unfinished until the new manifest
            remove_uri(join_uri(store, MANIFEST))
        write_json(join_uri(store, BUILD), build)
    factory = partial(_featurizer, vocab.tokens, cfg.model.max_length, f.ecfp_radius, f.ecfp_bits)
    shards, failed, reused = [], [], 0
    molecules = truncated = 0
    with Pool(factory, cfg.system.n_workers) as pool:
        for i, table in enumerate(progress(_shards(layout.parquet, f.shard_size), desc="shards")):
            shard_uri = join_uri(store, shard_name(i))
            failed_uri = shard_uri + ".failed.tsv"
            if reuse and uri_exists(shard_uri) and uri_exists(failed_uri):
                with np.load(open_uri(shard_uri)) as z:
                    subset = z["subset"]
                with open_uri(failed_uri, "r") as fh:
                    failed += [line.rstrip("\n") for line in fh if line.strip()]
                shards.append(entry(i, subset) | {"truncated": None})
                molecules += len(subset)
                reused += 1
                continue
            smiles = table.column("molecule_smiles").to_pylist()
            feats = list(pool.map(smiles))
            ok = np.array([x is not None for x in feats], dtype=bool)
            ids = table.column("mol_id").to_pylist()
            bad = [f"{ids[j]}\t{smiles[j]}\tRDKit cannot parse it" for j in np.flatnonzero(~ok)]
            with replacing_uri(failed_uri, "w") as fh:
                fh.write("".join(line + "\n" for line in bad))
            arrays = _arrays(table, feats, ok, cfg, vocab.dtype)
            n_trunc = sum(1 for x in feats if x is not None and x[2])
            shards.append(write_shard(store, i, arrays) | {"truncated": n_trunc})
            crashpoint("make_dataset.shard_written")
            failed += bad
            molecules += int(ok.sum())
            truncated += n_trunc
    with replacing_uri(layout.out("failed_molecules.txt"), "w") as fh:
        fh.write("mol_id\tmolecule_smiles\treason\n" + "".join(line + "\n" for line in failed))
    if failed:
        log.warning(
            "%d molecules skipped (see %s)", len(failed), layout.out("failed_molecules.txt")
        )
    if truncated:
        log.warning("%d molecules longer than model.max_length were cut", truncated)
    write_json(
        join_uri(store, MANIFEST),
        build | {"shards": shards, "rows": molecules, "skipped": len(failed)},
    )
    log.info("%s: %d molecules in %d shards, %d reused", store, molecules, len(shards), reused)
    return DatasetResult(store, molecules, len(shards), reused, len(failed), truncated)
