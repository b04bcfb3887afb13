"""make_dataset: belka.parquet -> the feature store `belka.tfr/` (token ids, ECFP bits,
labels), one shard per `features.shard_size` molecules, featurized on `system.n_workers`
processes. A re-run keeps the shards a killed run finished; molecules RDKit cannot parse
are skipped and listed in `failed_molecules.txt`.

On a cluster the work fans out: `plan` splits the shards into contiguous ranges, each task
`featurize`s one range into its own folder, and `finish` gathers the parts into one store
and writes the manifest. One process (`run`) is the same three calls with one range and no
gathering, so either way the store is the same, byte for byte. Each shard is written as
its `.npz`, its `.failed.tsv` and last its record `shard-NNNNN.json` (rows, truncations,
size and SHA-256 of the `.npz`): a shard without its record is redone, and `finish`
refuses a store whose shard is missing or does not match its record."""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from belka import PROTEINS
from belka.config import Config
from belka.data.store import (
    BUILD,
    FORMAT_VERSION,
    MANIFEST,
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
from pipekit.errors import InputDataError
from pipekit.faults import crashpoint
from pipekit.fingerprint import content_digest
from pipekit.kfp_io import copy_uri
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
FAILED_HEADER = "mol_id\tmolecule_smiles\treason\n"


@dataclass(frozen=True)
class DatasetResult:
    store: str
    molecules: int
    shards: int
    reused_shards: int
    skipped: int
    truncated: int


@dataclass(frozen=True)
class PartResult:
    store: str
    first: int
    stop: int
    reused_shards: int
    build: dict[str, Any]  # what its shards are made from (`build_record`)


def record_name(i: int) -> str:
    return f"shard-{i:05d}.json"


def failed_name(i: int) -> str:
    return shard_name(i) + ".failed.tsv"


def shard_files(i: int) -> tuple[str, str, str]:
    """A shard's files, its record last (the one that says the other two are whole)."""
    return shard_name(i), failed_name(i), record_name(i)


def _featurizer(tokens: list[str], max_length: int, radius: int, bits: int) -> Featurizer:
    return Featurizer(Vocab(tokens), max_length, radius, bits)


def _tables(uri: str, size: int, first: int, stop: int) -> Iterator[pa.Table]:
    """Shards `first` .. `stop`-1 of belka.parquet as tables of `size` rows (the file's last
    one shorter), reading only the row groups that hold them."""
    pf = pq.ParquetFile(open_uri(uri))
    meta = pf.metadata
    start, end = first * size, min(stop * size, meta.num_rows)
    groups: list[int] = []
    skip = offset = 0
    for g in range(meta.num_row_groups):
        n = meta.row_group(g).num_rows
        if offset + n > start and offset < end:
            skip = skip if groups else start - offset
            groups.append(g)
        offset += n
    if not groups:
        return
    pending: list[pa.RecordBatch] = []
    have, left = 0, end - start
    for batch in pf.iter_batches(batch_size=size, columns=COLUMNS, row_groups=groups):
        if skip >= batch.num_rows:
            skip -= batch.num_rows
            continue
        pending.append(batch.slice(skip))
        have += batch.num_rows - skip
        skip = 0
        while left > 0 and have >= min(size, left):
            table = pa.Table.from_batches(pending).combine_chunks()
            take = min(size, left)
            yield table.slice(0, take)
            left -= take
            rest = table.slice(take)
            pending, have = rest.to_batches(), rest.num_rows
        if left <= 0:
            return


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


def build_record(cfg: Config, layout: Layout, vocab: Vocab) -> dict[str, Any]:
    """What the shards are made from: a store (or part) made from anything else is redone."""
    f = cfg.features
    return {
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


def shard_count(cfg: Config, layout: Layout) -> int:
    rows = pq.ParquetFile(open_uri(layout.parquet)).metadata.num_rows
    return math.ceil(rows / cfg.features.shard_size)


def plan(cfg: Config, layout: Layout, tasks: int) -> list[dict[str, int]]:
    """The shards in at most `tasks` contiguous ranges of near-equal length, one per task
    (`{"first": i, "stop": j}`: shards i .. j-1); a set smaller than one shard a task gets
    fewer tasks."""
    if tasks < 1:
        raise InputDataError(f"make_dataset needs at least one task, not {tasks}")
    require_file(layout.parquet, "data.working", "run --step generate_parquet first")
    n = shard_count(cfg, layout)
    k = max(1, min(tasks, n))
    bounds = [round(j * n / k) for j in range(k + 1)]
    return [{"first": a, "stop": b} for a, b in itertools.pairwise(bounds)]


def _start(store: str, build: dict[str, Any]) -> bool:
    """Record what this store is made from; True when shards already there can be kept."""
    if read_json(join_uri(store, BUILD)) == build:
        return True
    if uri_exists(join_uri(store, MANIFEST)):  # unfinished until the new manifest
        remove_uri(join_uri(store, MANIFEST))
    write_json(join_uri(store, BUILD), build)
    return False


def _write(store: str, i: int, table: pa.Table, pool: Pool, cfg: Config, vocab: Vocab) -> None:
    """Featurize one shard and write its three files, the record last."""
    smiles = table.column("molecule_smiles").to_pylist()
    feats = list(pool.map(smiles))
    ok = np.array([x is not None for x in feats], dtype=bool)
    ids = table.column("mol_id").to_pylist()
    bad = [f"{ids[j]}\t{smiles[j]}\tRDKit cannot parse it" for j in np.flatnonzero(~ok)]
    with replacing_uri(join_uri(store, failed_name(i)), "w") as fh:
        fh.write("".join(line + "\n" for line in bad))
    record = write_shard(store, i, _arrays(table, feats, ok, cfg, vocab.dtype)) | {
        "truncated": sum(1 for x in feats if x is not None and x[2]),
        "skipped": len(bad),
    }
    write_json(join_uri(store, record_name(i)), record)


def featurize(cfg: Config, layout: Layout, first: int = 0, stop: int | None = None) -> PartResult:
    """Write shards `first` .. `stop`-1 (default: all) into `layout.store`, keeping those a
    killed run of the same build finished."""
    apply_storage_options(cfg.data.storage_options)
    require_file(layout.parquet, "data.working", "run --step generate_parquet first")
    vocab = Vocab.load(layout.vocab)
    stop = shard_count(cfg, layout) if stop is None else stop
    store, f = layout.store, cfg.features
    build = build_record(cfg, layout, vocab)
    reuse = _start(store, build)
    done = {
        i
        for i in range(first, stop)
        if reuse and all(uri_exists(join_uri(store, name)) for name in shard_files(i))
    }
    todo = [i for i in range(first, stop) if i not in done]
    factory = partial(_featurizer, vocab.tokens, cfg.model.max_length, f.ecfp_radius, f.ecfp_bits)
    if todo:
        with Pool(factory, cfg.system.n_workers) as pool:
            tables = _tables(layout.parquet, f.shard_size, todo[0], stop)
            for i, table in progress(
                zip(range(todo[0], stop), tables, strict=True),
                total=stop - todo[0],
                desc="shards",
                unit="shard",
            ):
                if i in done:
                    continue
                _write(store, i, table, pool, cfg, vocab)
                crashpoint("make_dataset.shard_written")
    log.info("%s: shards %d..%d, %d kept from an earlier run", store, first, stop - 1, len(done))
    return PartResult(store, first, stop, len(done), build)


def _gather(parts: Sequence[str], store: str, build: dict[str, Any]) -> None:
    """Copy each part's shards into the store (a part of another build is refused)."""
    for part in parts:
        theirs = read_json(join_uri(part, BUILD))
        if theirs != build:
            raise InputDataError(
                f"{part}: its shards were made from other inputs or settings than this store's "
                f"({BUILD} differs); run its make_dataset task again"
            )
        for name in (read_json(join_uri(part, "part.json")) or {}).get("files", []):
            if not uri_exists(join_uri(part, name)):
                continue  # `_check` names what is missing
            copy_uri(join_uri(part, name), join_uri(store, name))


def _check(store: str, i: int) -> dict[str, Any]:
    """Shard i's record, after checking that its data is there and whole."""
    record = read_json(join_uri(store, record_name(i)))
    data_uri = join_uri(store, shard_name(i))
    if (
        record is None
        or not uri_exists(data_uri)
        or not uri_exists(join_uri(store, failed_name(i)))
    ):
        raise InputDataError(
            f"{store}: shard {i} ({shard_name(i)}) is missing; run make_dataset again (it "
            "redoes only the missing shards)"
        )
    have = content_digest(data_uri)  # streamed: shards are read once more, never held
    if have != {"size": record["bytes"], "sha256": record["sha256"]}:
        raise InputDataError(
            f"{data_uri}: {have['size']} bytes that do not match its record ({record['bytes']} "
            f"bytes, sha256 {record['sha256'][:12]}...): torn or replaced; delete it and "
            "run make_dataset again"
        )
    return record


def finish(
    cfg: Config,
    layout: Layout,
    parts: Sequence[str] = (),
    build: dict[str, Any] | None = None,
) -> DatasetResult:
    """Gather the `parts` (folders `featurize` wrote) into `layout.store`, check every shard
    against its record, and write failed_molecules.txt and the manifest. `build`: the
    record `featurize` made in this process (else made here: it reads the whole parquet)."""
    apply_storage_options(cfg.data.storage_options)
    build = build or build_record(cfg, layout, Vocab.load(layout.vocab))
    store = layout.store
    _start(store, build)
    _gather(parts, store, build)
    records, failed = [], []
    for i in range(shard_count(cfg, layout)):
        records.append(_check(store, i))
        with open_uri(join_uri(store, failed_name(i)), "r") as fh:
            failed += [line.rstrip("\n") for line in fh if line.strip()]
    with replacing_uri(layout.out("failed_molecules.txt"), "w") as fh:
        fh.write(FAILED_HEADER + "".join(line + "\n" for line in failed))
    truncated = sum(r["truncated"] for r in records)
    if failed:
        log.warning(
            "%d molecules skipped (see %s)", len(failed), layout.out("failed_molecules.txt")
        )
    if truncated:
        log.warning("%d molecules longer than model.max_length were cut", truncated)
    molecules = sum(r["rows"] for r in records)
    write_json(
        join_uri(store, MANIFEST),
        build | {"shards": records, "rows": molecules, "skipped": len(failed)},
    )
    log.info("%s: %d molecules in %d shards", store, molecules, len(records))
    return DatasetResult(store, molecules, len(records), 0, len(failed), truncated)


def run_part(cfg: Config, layout: Layout, first: int, stop: int) -> PartResult:
    """One task of the fan-out: its shards, and `part.json` listing the files it made."""
    res = featurize(cfg, layout, first, stop)
    files = [name for i in range(first, stop) for name in shard_files(i)]
    write_json(join_uri(layout.store, "part.json"), {"first": first, "stop": stop, "files": files})
    return res


def run(cfg: Config, layout: Layout | None = None) -> DatasetResult:
    """The whole store in this process."""
    layout = layout or Layout.of(cfg)
    part = featurize(cfg, layout)
    res = finish(cfg, layout, build=part.build)
    return DatasetResult(
        res.store, res.molecules, res.shards, part.reused_shards, res.skipped, res.truncated
    )
