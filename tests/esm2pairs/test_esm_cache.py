"""The master cache: computed once per distinct sequence, equal to the model's own output,
refusing another model's setup, and whole after a kill -9 at any write point."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from esm2pairs.config import load_config
from esm2pairs.embedder import length_batches
from esm2pairs.paths import Layout
from esm2pairs.steps import embed, preprocess
from pipekit.errors import InputDataError
from tests.esm2pairs.conftest import write_esm_config


def _cache(cfg_path: Path) -> tuple[np.ndarray, np.ndarray, pd.DataFrame, dict]:
    layout = Layout.from_config(load_config(str(cfg_path)))
    with h5py.File(layout.cache_h5) as f:
        keys, emb, attrs = f["emb_keys"][:].astype(str), f["emb"][:], dict(f.attrs)
    return keys, emb, pd.read_parquet(layout.cache_index), attrs


def _reference(model_dir: Path, seqs: list[str], max_residues: int) -> np.ndarray:
    """Mean over residue tokens of the last layer, one unpadded sequence at a time, straight
    from transformers (no batching, masks or pooling code of ours)."""
    from transformers import AutoTokenizer, EsmModel

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    model = EsmModel.from_pretrained(str(model_dir), add_pooling_layer=False).eval()
    out = []
    with torch.no_grad():
        for s in seqs:
            ids = tok(s[:max_residues], return_tensors="pt")["input_ids"]
            hidden = model(input_ids=ids).last_hidden_state[0]  # (T, D): CLS, residues, EOS
            out.append(hidden[1:-1].mean(0).numpy())
    return np.stack(out)


def test_each_distinct_sequence_is_embedded_once_as_the_model_computes_it(embedded, tiny_model):
    cfg = load_config(str(embedded))
    layout = Layout.from_config(cfg)
    final = pd.read_csv(layout.input_file, dtype=str)
    keys, emb, index, attrs = _cache(embedded)
    seqs = final["esm2_ready_seq"]
    assert len(keys) == len(set(keys)) == seqs.nunique() < len(seqs)  # shared proteins
    assert attrs["pooling"] == "mean" and attrs["precision"] == "fp32" and attrs["dim"] == 32
    assert set(index["brc_fea_id"]) == set(final["brc_fea_id"])
    rows = index.set_index("brc_fea_id")["row"]
    # IDs with one sequence share one row
    same = final[seqs.duplicated(keep=False)].groupby("esm2_ready_seq")["brc_fea_id"]
    for _, ids in same:
        assert rows[ids].nunique() == 1
    # padded, length-sorted batches give what the model gives each sequence alone,
    # including the sequence over esm2_max_residues (ESM-2 sees its first 120)
    longest = seqs.str.len().idxmax()
    picks = [longest, 0, 5, 6]
    ref = _reference(tiny_model, [seqs[i] for i in picks], 120)
    got = emb[[rows[final.brc_fea_id[i]] for i in picks]]
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)


def test_a_rerun_makes_no_model_call_and_force_recompute_redoes_all(embedded_copy) -> None:
    cfg = load_config(str(embedded_copy))
    before = _cache(embedded_copy)
    again = embed.run(cfg)
    assert again.hit_rate == 1.0 and again.model_calls == 0 and again.n_computed == 0
    redo = embed.run(cfg, force_recompute=True)
    assert redo.n_computed == redo.n_sequences and redo.model_calls > 0
    after = _cache(embedded_copy)
    assert list(after[0]) == list(before[0])  # rows keep their place
    np.testing.assert_allclose(after[1], before[1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("change", ["other_weights", "cls_pooling"])
def test_a_cache_of_another_model_setup_is_refused(embedded_copy, other_model, change) -> None:
    over = (
        [f"embeddings.model_ckpt={other_model}"]
        if change == "other_weights"
        else ["embeddings.pooling=cls"]
    )
    before = _cache(embedded_copy)
    with pytest.raises(InputDataError, match="another model setup"):
        embed.run(load_config(str(embedded_copy), over))
    assert list(_cache(embedded_copy)[0]) == list(before[0])


def test_failed_ids_are_listed_and_accumulate(embedded_copy) -> None:
    cfg = load_config(str(embedded_copy))
    layout = Layout.from_config(cfg)
    final = pd.read_csv(layout.input_file, dtype=str)
    final.loc[3, "esm2_ready_seq"] = ""
    final.to_csv(layout.input_file, index=False)
    embed.run(cfg)
    failed = pd.read_csv(layout.failed_ids, dtype=str)
    assert failed.to_dict("records") == [
        {"brc_fea_id": final.brc_fea_id[3], "reason": "empty sequence"}
    ]
    final.loc[4, "esm2_ready_seq"] = ""
    final.to_csv(layout.input_file, index=False)
    embed.run(cfg)
    assert set(pd.read_csv(layout.failed_ids, dtype=str)["brc_fea_id"]) == set(
        final.brc_fea_id[[3, 4]]
    )


@pytest.mark.parametrize(
    "point",
    [
        "embed.part_written:2",
        "cache.store_replaced:1",
        "cache.index_replaced:1",
        "cache.parts_dropping:1",
    ],
)
def test_a_killed_embed_rerun_loses_and_duplicates_nothing(
    tmp_path: Path, raw_proteins, tiny_model, embedded, point: str
) -> None:
    """A real process, killed with SIGKILL at a write point, then run again."""
    cfg_path = write_esm_config(tmp_path, raw_proteins, tiny_model)
    preprocess.run(load_config(str(cfg_path)))
    cmd = [sys.executable, "-m", "esm2pairs", "embed", "--config", str(cfg_path), "-q"]
    env = {**os.environ, "PIPEKIT_CRASH_AT": point}
    killed = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert killed.returncode == -9, killed.stderr
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert again.returncode == 0, again.stderr
    keys, emb, index, _ = _cache(cfg_path)
    ref_keys, ref_emb, ref_index, _ = _cache(embedded)  # one uninterrupted run
    assert len(keys) == len(set(keys)) == len(ref_keys)
    assert not list(
        (Path(Layout.from_config(load_config(str(cfg_path))).embeddings_dir) / "_parts").glob("*")
    )
    mine = dict(zip(keys, emb, strict=True))
    for k, v in zip(ref_keys, ref_emb, strict=True):
        np.testing.assert_allclose(mine[k], v, rtol=1e-5, atol=1e-6)
    got = index.set_index("brc_fea_id")["row"]
    assert set(got.index) == set(ref_index["brc_fea_id"])
    assert all(
        keys[got[i]] == ref_keys[r]
        for i, r in zip(ref_index.brc_fea_id, ref_index.row, strict=True)
    )


def test_length_batches_respect_the_token_budget_and_take_each_index_once() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 300, 500).tolist()
    batches = list(length_batches(lengths, batch_size=16, max_tokens=2000))
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(500))
    for b in batches:
        assert len(b) <= 16 and len(b) * (max(lengths[i] for i in b) + 2) <= 2000
    firsts = [lengths[b[0]] for b in batches]
    assert firsts == sorted(firsts, reverse=True)  # longest first


def test_an_over_budget_sequence_gets_a_batch_of_its_own() -> None:
    assert list(length_batches([5000, 3, 4], batch_size=8, max_tokens=100)) == [[0], [2, 1]]


def test_a_second_embed_on_a_busy_cache_is_refused_in_one_line(embedded_copy) -> None:
    """Another process holds the cache folder (a real second process, the lock a real flock)."""
    from pipekit.runlock import run_lock

    layout = Layout.from_config(load_config(str(embedded_copy)))
    cmd = [sys.executable, "-m", "esm2pairs", "embed", "--config", str(embedded_copy), "-q"]
    with run_lock(layout.embeddings_dir, "embed"):
        busy = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert busy.returncode == 2
    err = [line for line in busy.stderr.splitlines() if line.startswith("esm2pairs: error:")]
    assert len(err) == 1 and layout.embeddings_dir in err[0], busy.stderr
    assert subprocess.run(cmd, capture_output=True, timeout=180).returncode == 0


@pytest.mark.parametrize(("pooling", "layer"), [("max", 1), ("cls", "second_last")])
def test_other_poolings_and_layers_match_the_model(
    tmp_path, raw_proteins, tiny_model, pooling, layer
):
    from transformers import AutoTokenizer, EsmModel

    from esm2pairs.embedder import Embedder

    seqs = ["MKTAYIAKQRQISFVKSHFSRQ", "MSTNPKPQRKTKRNTNRRPQDVKFPGG", "GAVL"]
    got = Embedder(tiny_model, pooling, layer, 120, "cpu").embed(seqs)  # one padded batch
    tok = AutoTokenizer.from_pretrained(str(tiny_model))
    model = EsmModel.from_pretrained(str(tiny_model), add_pooling_layer=False).eval()
    index = 1 if layer == 1 else model.config.num_hidden_layers - 1
    for row, s in zip(got, seqs, strict=True):
        with torch.no_grad():
            out = model(**tok(s, return_tensors="pt"), output_hidden_states=True)
        hidden = out.hidden_states[index][0]  # (T, D)
        want = hidden[1:-1].max(0).values if pooling == "max" else hidden[0]
        np.testing.assert_allclose(row, want.numpy(), rtol=1e-4, atol=1e-5)


def test_a_sampled_run_gets_its_own_folder_and_shares_the_canonical_cache(embedded_copy) -> None:
    """max_isolates_to_process: a seeded sample, recorded in the run-specific folder; its
    embeddings come from the cache the whole-data run filled (no model call)."""
    over = ["sampling.max_isolates_to_process=10"]
    cfg = load_config(str(embedded_copy), over)
    full = Layout.from_config(load_config(str(embedded_copy)))
    layout = Layout.from_config(cfg)
    assert layout.embeddings_dir == full.embeddings_dir  # canonical: no suffix
    assert layout.output_dir == full.output_dir + "_seed_42_isolates_10"
    preprocess.run(cfg)
    res = embed.run(cfg)
    assert res.model_calls == 0 and res.hit_rate == 1.0
    sampled = Path(layout.sampled_isolates).read_text().split()
    assert len(sampled) == 10 and len(Path(full.sampled_isolates).read_text().split()) == 40
    embed.run(cfg)
    assert Path(layout.sampled_isolates).read_text().split() == sampled  # seeded
    other = Layout.from_config(load_config(str(embedded_copy), [*over, "sampling.random_seed=7"]))
    assert other.output_dir.endswith("_seed_7_isolates_10")
