"""embed (compute_esm2_embeddings): every protein of `protein_final.csv` (or of a seeded
sample of isolates) into the master cache, each distinct sequence computed once.

Outputs: the master cache (canonical folder, shared by runs), `sampled_isolates.txt` (this
run's isolates, in the run-specific folder) and `failed_brc_fea_ids.csv` (beside the
cache, accumulated over runs)."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from esm2pairs.config import Config
from esm2pairs.data.cache import CacheMeta, MasterCache, cache_key, seq_hash
from esm2pairs.data.proteins import SEQ_COL, read_final, report_sequences
from esm2pairs.embedder import Embedder, length_batches, model_signature, resolve_model_dir
from esm2pairs.paths import CACHE_H5, CACHE_INDEX, Layout
from pipekit.atomic import replacing_uri
from pipekit.errors import InputDataError
from pipekit.faults import crashpoint
from pipekit.monitoring import StepMetrics, run_id, step_metrics
from pipekit.progress import progress
from pipekit.runlock import run_lock
from pipekit.uri import open_uri, storage_errors, uri_exists

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbedResult:
    cache: str
    n_ids: int
    n_sequences: int  # distinct sequences of this run
    n_cached: int  # of them, already in the cache
    n_computed: int
    n_failed: int
    model_calls: int
    seconds: float

    @property
    def hit_rate(self) -> float:
        return self.n_cached / max(self.n_sequences, 1)

    @property
    def sequences_per_s(self) -> float:
        """Of the model here (a merge computed nothing itself: 0)."""
        return self.n_computed / max(self.seconds, 1e-9) if self.model_calls else 0.0

    def log(self) -> None:
        log.info(
            "embed: %d IDs, %d distinct sequences (%d cached, %d computed, %d failed), %d "
            "model calls -> %s",
            self.n_ids,
            self.n_sequences,
            self.n_cached,
            self.n_computed,
            self.n_failed,
            self.model_calls,
            self.cache,
        )


def sample_isolates(df: pd.DataFrame, cfg: Config) -> list[str]:
    """All isolates, or a seeded sample of `max_isolates_to_process` of them."""
    isolates = sorted(df["assembly_id"].unique())
    n = cfg.sampling.max_isolates_to_process
    if n is None or n >= len(isolates):
        if n is not None:
            log.info("max_isolates_to_process=%d >= %d isolates: using all", n, len(isolates))
        return isolates
    rng = np.random.default_rng(cfg.sampling.random_seed)
    return sorted(rng.choice(isolates, size=n, replace=False).tolist())


def master_cache(layout: Layout) -> MasterCache:
    return MasterCache(layout.embeddings_dir, CACHE_H5, CACHE_INDEX)


def _write_failed(uri: str, failed: dict[str, str], succeeded: set[str]) -> int:
    """Accumulate: earlier runs' failures stay listed unless this run embedded them."""
    old = pd.DataFrame(columns=["brc_fea_id", "reason"])
    if uri_exists(uri):
        with open_uri(uri, "rb") as fh:
            old = pd.read_csv(fh, dtype=str)
    new = pd.DataFrame({"brc_fea_id": list(failed), "reason": list(failed.values())})
    merged = pd.concat([old, new]).drop_duplicates("brc_fea_id", keep="last")
    merged = merged[~merged["brc_fea_id"].isin(succeeded - set(failed))]
    if len(merged) or uri_exists(uri):
        with replacing_uri(uri, "w") as fh:
            merged.to_csv(fh, index=False)
    return len(merged)


def _compute(
    embedder: Embedder,
    cache: MasterCache,
    todo: dict[str, str],
    cfg: Config,
    failed_keys: dict[str, str],
) -> int:
    """Embed the sequences of `todo` (key -> sequence) into parts of `flush_every` rows."""
    e = cfg.embeddings
    keys = list(todo)
    seqs = [todo[k] for k in keys]
    dtype = np.float16 if e.emb_storage_precision == "fp16" else np.float32
    done_keys: list[str] = []
    done_emb: list[np.ndarray] = []
    n_done = 0

    def flush() -> None:
        nonlocal done_keys, done_emb
        if done_keys:
            cache.write_part(done_keys, np.concatenate(done_emb).astype(dtype))
            crashpoint("embed.part_written")
            done_keys, done_emb = [], []

    batches = list(length_batches([len(s) for s in seqs], e.batch_size, e.max_tokens))
    t0 = time.perf_counter()
    metrics = StepMetrics(
        "esm2pairs", "embed", run_id(cfg.monitoring, cfg.virus.data_version), sample="Sequences"
    )
    with (
        step_metrics(metrics, cfg.monitoring),
        progress(total=len(seqs), desc="embed", unit="seq") as bar,
    ):
        for batch in batches:
            t_batch = time.perf_counter()
            try:
                out = [embedder.embed([seqs[i] for i in batch])]
                ok = batch
            except (RuntimeError, ValueError) as exc:  # e.g. out of memory: one at a time
                log.warning("batch of %d failed (%s); retrying one by one", len(batch), exc)
                out, ok = [], []
                for i in batch:
                    try:
                        out.append(embedder.embed([seqs[i]]))
                        ok.append(i)
                    except (RuntimeError, ValueError) as one:
                        failed_keys[keys[i]] = f"{type(one).__name__}: {one}"[:300]
            if ok:
                emb = np.concatenate(out)
                if not np.isfinite(emb).all():
                    bad = [ok[j] for j in np.flatnonzero(~np.isfinite(emb).all(1))]
                    for i in bad:
                        failed_keys[keys[i]] = "non-finite embedding"
                    keep = np.isfinite(emb).all(1)
                    emb, ok = emb[keep], [i for i, k in zip(ok, keep, strict=True) if k]
                done_keys.extend(keys[i] for i in ok)
                done_emb.append(emb)
                n_done += len(ok)
            bar.update(len(batch))  # the bar shows sequences/s
            metrics.batch(len(batch), time.perf_counter() - t_batch)
            if len(done_keys) >= e.flush_every:
                flush()
        flush()
        metrics.pass_done({"samples_per_s": len(seqs) / max(time.perf_counter() - t0, 1e-9)})
    return n_done


def _proteins(cfg: Config, layout: Layout) -> tuple[pd.DataFrame, list[str], dict[str, str]]:
    """This run's proteins with a sequence, its isolates, and the IDs of empty ones."""
    df = read_final(layout.input_file)
    isolates = sample_isolates(df, cfg)
    df = df[df["assembly_id"].isin(set(isolates))].reset_index(drop=True)
    report_sequences(df[SEQ_COL], cfg.preprocess.esm2_max_residues)
    empty = df[SEQ_COL] == ""
    failed = dict.fromkeys(df.loc[empty, "brc_fea_id"], "empty sequence")
    return df.loc[~empty], isolates, failed


def _setup(cfg: Config, signature: str, precision: str, dim: int) -> CacheMeta:
    e = cfg.embeddings
    return CacheMeta(
        model_name=e.model_ckpt,
        model_signature=signature,
        pooling=e.pooling,
        layer=str(e.layer),
        precision=precision,
        max_residues=cfg.preprocess.esm2_max_residues,
        dim=dim,
    )


def _refuse_another_setup(cache: MasterCache, meta: CacheMeta, mine: CacheMeta) -> None:
    why = meta.differs(mine)
    if why:
        raise InputDataError(
            f"the master cache {cache.h5} was made by another model setup: {why}. "
            "Use another paths.embeddings_dir (or the cache's model settings); "
            "embeddings of two setups are never mixed"
        )


def shard_of_key(key: str, shards: int) -> int:
    """Which of `shards` embeds a key: from its sequence hash, so a sequence has one shard
    whatever the table's order, and a re-run gives every shard the same share."""
    return int(key[:8], 16) % shards


def _embedder(cfg: Config, folder) -> Embedder:
    e = cfg.embeddings
    return Embedder(
        folder, e.pooling, e.layer, cfg.preprocess.esm2_max_residues, e.device, e.mixed_precision
    )


def run_shard(cfg: Config, shard: int, shards: int) -> EmbedResult:
    """One share of a fanned-out embed: the distinct sequences of this run that fall to
    `shard` of `shards` and that neither the store nor a waiting part holds, embedded into
    whole part files, then a record of the setup and of what failed. Shards run side by side
    (each on its own GPU) without the cache's lock: they only add files of their own. A
    killed shard run again skips what its parts already hold; `run(..., compute=False)`
    then merges every part into the store once."""
    t0 = time.perf_counter()
    layout = Layout.from_config(cfg)
    df, _, _ = _proteins(cfg, layout)
    e = cfg.embeddings
    folder = resolve_model_dir(e.model_ckpt)
    signature = model_signature(folder, e.pooling, e.layer, cfg.preprocess.esm2_max_residues)
    cache = master_cache(layout)
    keys = [cache_key(s, signature) for s in df[SEQ_COL]]
    in_share = [shard_of_key(k, shards) == shard for k in keys]
    mine = {k: q for k, q, m in zip(keys, df[SEQ_COL], in_share, strict=True) if m}
    with storage_errors(f"master cache {layout.embeddings_dir}"):
        meta_now = cache.meta()
        embedder: Embedder | None = None
        if meta_now is not None:
            _refuse_another_setup(
                cache, meta_now, _setup(cfg, signature, meta_now.precision, meta_now.dim)
            )
        done = set(cache.keys()) | cache.part_keys()
        todo = {k: q for k, q in mine.items() if k not in done}
        failed_keys: dict[str, str] = {}
        n_computed = 0
        if todo:
            embedder = _embedder(cfg, folder)
            log.info(
                "shard %d/%d: embedding %d of its %d distinct sequences",
                shard,
                shards,
                len(todo),
                len(mine),
            )
            n_computed = _compute(embedder, cache, todo, cfg, failed_keys)
        if meta_now is not None:
            dim = meta_now.dim
        elif embedder is not None:
            dim = embedder.dim
        else:  # all done by parts of an attempt killed before its record, or nothing yet (0)
            dim = cache.part_dim()
        crashpoint("embed.shard_parts_done")
        precision = meta_now.precision if meta_now is not None else e.emb_storage_precision
        cache.write_shard_record(_setup(cfg, signature, precision, dim), failed_keys)
    return EmbedResult(
        cache.h5,
        sum(in_share),
        len(mine),
        len(mine) - len(todo),
        n_computed,
        len(failed_keys),
        embedder.calls if embedder is not None else 0,
        time.perf_counter() - t0,
    )


def _merged_setup(
    cache: MasterCache, meta_now: CacheMeta | None, records: list[dict[str, Any]]
) -> CacheMeta:
    """The setup the shards embedded with (all the same), for a merge that loads no model."""
    metas = {json.dumps(r["meta"], sort_keys=True) for r in records if r["meta"]["dim"]}
    if len(metas) > 1:
        raise InputDataError(
            f"the embed shards of {cache.folder} used different model setups: "
            f"{sorted(metas)}; run them again with one config"
        )
    if metas:
        return CacheMeta(**json.loads(metas.pop()))
    if meta_now is not None:
        return meta_now
    raise InputDataError(
        f"nothing to merge into {cache.folder}: no embed shard has run (embed --shard K/N)"
    )


def _cache_setup(
    cfg: Config, cache, meta_now: CacheMeta | None, shard_records, compute: bool
) -> tuple[CacheMeta, Embedder | None, Any]:
    """What the cache's embeddings are made with: the configured model's (refused when the
    cache holds another's), or, for a fan-out's merge, what its shards recorded. Returns
    it, the embedder if one had to be loaded to learn its width, and the model's folder."""
    if not compute:
        meta = _merged_setup(cache, meta_now, shard_records)
        if meta_now is not None:
            _refuse_another_setup(cache, meta_now, meta)
        return meta, None, None
    e = cfg.embeddings
    folder = resolve_model_dir(e.model_ckpt)
    signature = model_signature(folder, e.pooling, e.layer, cfg.preprocess.esm2_max_residues)
    if meta_now is None:
        embedder = _embedder(cfg, folder)
        return _setup(cfg, signature, e.emb_storage_precision, embedder.dim), embedder, folder
    _refuse_another_setup(cache, meta_now, _setup(cfg, signature, meta_now.precision, meta_now.dim))
    return meta_now, None, folder


def _write_index(cache, df: pd.DataFrame, df_keys: list[str], row_of: dict) -> pd.DataFrame:
    """The cache's index: this run's proteins that have a row, beside the other runs' ones
    (an ID listed again takes its new row). Returns this run's entries."""
    ids = df["brc_fea_id"].to_numpy()
    have = np.array([k in row_of for k in df_keys], dtype=bool)
    index_new = pd.DataFrame(
        {
            "brc_fea_id": ids[have],
            "row": np.array([row_of[k] for k, h in zip(df_keys, have, strict=True) if h], np.int64),
            "seq_hash": [seq_hash(s) for s in df[SEQ_COL][have]],
        }
    )
    index_old = cache.read_index(required=False)
    index = (
        pd.concat(
            [index_old[~index_old["brc_fea_id"].isin(set(index_new["brc_fea_id"]))], index_new]
        )
        .astype({"row": "int64"})
        .sort_values("row", kind="stable")
    )
    cache.write_index(index.reset_index(drop=True))
    return index_new


def run(cfg: Config, force_recompute: bool = False, compute: bool = True) -> EmbedResult:
    """Embed what the cache lacks and write the index of this run's proteins. With
    `compute=False` (the fan-out's last step) nothing is embedded: the shards' parts are
    merged, the index written, and what no shard embedded is listed as failed."""
    t0 = time.perf_counter()
    layout = Layout.from_config(cfg)
    df, isolates, failed = _proteins(cfg, layout)
    n_empty = len(failed)
    with replacing_uri(layout.sampled_isolates, "w") as fh:
        fh.write("".join(f"{i}\n" for i in isolates))
    cache = master_cache(layout)

    with (
        storage_errors(f"master cache {layout.embeddings_dir}"),
        run_lock(layout.embeddings_dir, "embed"),
    ):
        meta_now = cache.meta()
        records, shard_records = cache.shard_records()
        meta, embedder, folder = _cache_setup(cfg, cache, meta_now, shard_records, compute)
        signature = meta.model_signature
        df_keys = [cache_key(q, signature) for q in df[SEQ_COL]]
        wanted = dict(zip(df_keys, df[SEQ_COL], strict=True))
        stored_before = set(cache.keys()) if not compute else set()
        # parts a killed run, or the shards, left behind; listed first, so that a part
        # written meanwhile (a shard beside this run) is neither merged nor dropped
        parts = cache.part_uris()
        row_of = cache.merge(meta, parts)
        if row_of is not None:
            cache.drop_parts(parts)
        else:
            row_of = {k: i for i, k in enumerate(cache.keys())}
        todo = {k: s for k, s in wanted.items() if force_recompute or k not in row_of}
        n_cached = 0 if force_recompute else len(wanted) - len(todo)
        n_computed = 0
        if not compute:  # the shards computed what was not stored before this merge
            n_cached = sum(k in stored_before for k in wanted)
            n_computed = len(wanted) - len(todo) - n_cached
        failed_keys: dict[str, str] = {}
        if todo and compute:
            embedder = embedder or _embedder(cfg, folder)
            log.info("embedding %d of %d distinct sequences", len(todo), len(wanted))
            n_computed = _compute(embedder, cache, todo, cfg, failed_keys)
            parts = cache.part_uris()
            row_of = cache.merge(meta, parts) or row_of  # None: every sequence failed
        elif todo:  # a fan-out's merge: what no shard embedded
            reasons = {k: r for rec in shard_records for k, r in rec["failed"].items()}
            for k in todo:
                failed_keys[k] = reasons.get(k, "not embedded by any shard (run the shards again)")
        ids = df["brc_fea_id"].to_numpy()
        index_new = _write_index(cache, df, df_keys, row_of)
        if todo and compute:
            cache.drop_parts(parts)
        cache.drop_parts(records)
        key_of = dict(zip(df["brc_fea_id"], df_keys, strict=True))
        for brc, key in key_of.items():
            if key in failed_keys:
                failed[brc] = failed_keys[key]
        _write_failed(layout.failed_ids, failed, set(index_new["brc_fea_id"]))
        cache.check()
    calls = embedder.calls if embedder is not None else 0
    res = EmbedResult(
        cache.h5,
        len(ids) + n_empty,
        len(wanted),
        n_cached,
        n_computed,
        len(failed),
        calls,
        time.perf_counter() - t0,
    )
    res.log()
    if not len(index_new):
        raise InputDataError("no protein could be embedded (see failed_brc_fea_ids.csv)")
    return res
