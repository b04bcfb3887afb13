"""Embedding fanned out: shards as real processes side by side, one killed with SIGKILL
after a part and run again, then the merge; the cache equals one uninterrupted run's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from esm2pairs.config import load_config
from esm2pairs.paths import Layout
from esm2pairs.steps import preprocess
from esm2pairs.steps.embed import shard_of_key
from tests.esm2pairs.conftest import write_esm_config


def _store(cfg_path: Path) -> tuple[dict[str, np.ndarray], pd.DataFrame, Path]:
    layout = Layout.from_config(load_config(str(cfg_path)))
    with h5py.File(layout.cache_h5) as f:
        keys = f["emb_keys"][:].astype(str)
        assert len(keys) == len(set(keys))  # no key stored twice
        rows = dict(zip(keys, f["emb"][:], strict=True))
    return rows, pd.read_parquet(layout.cache_index), Path(layout.embeddings_dir)


def test_shards_side_by_side_one_killed_then_merged_equal_one_run(
    tmp_path: Path, raw_proteins: Path, tiny_model: Path, embedded: Path
) -> None:
    cfg_path = write_esm_config(tmp_path, raw_proteins, tiny_model)
    preprocess.run(load_config(str(cfg_path)))
    cmd = [sys.executable, "-m", "esm2pairs", "embed", "--config", str(cfg_path), "-q"]
    killed_env = {**os.environ, "PIPEKIT_CRASH_AT": "embed.part_written:2"}
    shard0 = subprocess.Popen([*cmd, "--shard", "0/2"], stderr=subprocess.PIPE, text=True)
    shard1 = subprocess.Popen(
        [*cmd, "--shard", "1/2"], env=killed_env, stderr=subprocess.PIPE, text=True
    )
    assert shard0.wait(timeout=300) == 0, shard0.stderr.read() if shard0.stderr else ""
    assert shard1.wait(timeout=300) == -9
    parts = Path(Layout.from_config(load_config(str(cfg_path))).embeddings_dir) / "_parts"
    assert len(list(parts.glob("part-*.npz"))) >= 3  # shard 0's and two of shard 1's

    again = subprocess.run([*cmd, "--shard", "1/2"], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "embed shard 1/2" in again.stdout and " 0 already embedded" not in again.stdout

    merged = subprocess.run([*cmd, "--merge"], capture_output=True, text=True, timeout=300)
    assert merged.returncode == 0, merged.stderr
    assert "0 in the store before" in merged.stdout and " 0 failed" in merged.stdout

    rows, index, folder = _store(cfg_path)
    ref_rows, ref_index, _ = _store(embedded)  # one process, uninterrupted
    assert set(rows) == set(ref_rows)
    assert f"{len(rows)} from the shards" in merged.stdout
    assert {shard_of_key(k, 2) for k in rows} == {0, 1}  # both shards had work
    for k, v in ref_rows.items():
        np.testing.assert_allclose(rows[k], v, rtol=1e-5, atol=1e-6)
    assert set(index["brc_fea_id"]) == set(ref_index["brc_fea_id"])
    keys = list(rows)
    row_key = {r: keys[r] for r in range(len(keys))}
    ref_keys = list(ref_rows)
    for brc, r in zip(ref_index["brc_fea_id"], ref_index["row"], strict=True):
        assert row_key[int(index.set_index("brc_fea_id").at[brc, "row"])] == ref_keys[r]
    assert not list((folder / "_parts").glob("*"))  # parts and shard records merged away


def test_a_merge_with_no_shard_run_says_so(tmp_path: Path, raw_proteins, tiny_model) -> None:
    cfg_path = write_esm_config(tmp_path, raw_proteins, tiny_model)
    preprocess.run(load_config(str(cfg_path)))
    cmd = [sys.executable, "-m", "esm2pairs", "embed", "--config", str(cfg_path), "-q", "--merge"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "no embed shard has run" in out.stderr


def test_a_shard_killed_after_its_last_part_is_merged_all_the_same(
    tmp_path: Path, raw_proteins: Path, tiny_model: Path
) -> None:
    """Killed after its parts, before its record: the retry computes nothing and still
    records what the parts were made with, so the merge takes them."""
    cfg_path = write_esm_config(tmp_path, raw_proteins, tiny_model)
    preprocess.run(load_config(str(cfg_path)))
    cmd = [sys.executable, "-m", "esm2pairs", "embed", "--config", str(cfg_path), "-q"]
    env = {**os.environ, "PIPEKIT_CRASH_AT": "embed.shard_parts_done"}
    killed = subprocess.run([*cmd, "--shard", "0/1"], env=env, capture_output=True, timeout=300)
    assert killed.returncode == -9
    again = subprocess.run([*cmd, "--shard", "0/1"], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and " 0 computed" in again.stdout, again.stdout + again.stderr
    merged = subprocess.run([*cmd, "--merge"], capture_output=True, text=True, timeout=300)
    assert merged.returncode == 0 and " 0 failed" in merged.stdout, merged.stderr
    rows, index, _ = _store(cfg_path)
    assert len(rows) > 100 and index["row"].max() == len(rows) - 1
