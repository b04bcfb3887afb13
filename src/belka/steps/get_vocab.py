"""get_vocab: every molecule's SMILES tokens -> `vocab.txt` (PAD, MASK, UNK, then the
tokens by frequency)."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

import pyarrow.parquet as pq

from belka.config import Config
from belka.parallel import Pool
from belka.paths import Layout
from belka.tokenizer import Vocab, tokenize
from pipekit.errors import InputDataError
from pipekit.progress import progress
from pipekit.uri import apply_storage_options, open_uri, require_file

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VocabResult:
    vocab: str
    size: int
    molecules: int
    untokenizable: int
    longest: int


class _Count:
    def __call__(self, smiles: str) -> list[str] | None:
        try:
            return tokenize(smiles)
        except ValueError:
            return None


def run(cfg: Config, layout: Layout | None = None) -> VocabResult:
    apply_storage_options(cfg.data.storage_options)
    layout = layout or Layout.of(cfg)
    require_file(layout.parquet, "data.working", "run --step generate_parquet first")
    counts: Counter[str] = Counter()
    bad, n, longest = 0, 0, 0
    pf = pq.ParquetFile(open_uri(layout.parquet))
    with Pool(_Count, cfg.system.n_workers) as pool:
        batches = pf.iter_batches(batch_size=100_000, columns=["molecule_smiles"])
        for batch in progress(batches, desc="tokenize", unit="batch"):
            for tokens in pool.map(batch.column(0).to_pylist()):
                n += 1
                if tokens is None:
                    bad += 1
                    continue
                counts.update(tokens)
                longest = max(longest, len(tokens))
    if not counts:
        raise InputDataError(f"{layout.parquet}: no tokenizable molecule")
    if bad:
        log.warning("%d of %d molecules are not tokenizable; make_dataset skips them", bad, n)
    vocab = Vocab.from_counts(counts)
    vocab.save(layout.vocab)
    if longest > cfg.model.max_length:
        log.warning(
            "the longest molecule has %d tokens, model.max_length is %d: longer ones are cut",
            longest,
            cfg.model.max_length,
        )
    return VocabResult(layout.vocab, len(vocab), n, bad, longest)
