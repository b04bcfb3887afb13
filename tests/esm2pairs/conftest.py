"""Tiny ESM-2 data: a random tiny model saved as the hub saves models, and demo proteins."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from esm2pairs.demo import make_tiny_esm, protein_table

FAST = {
    "virus": {"virus_name": "flu_test", "data_version": "v1"},
    "preprocess": {"esm2_max_residues": 120},
    "embeddings": {
        "emb_storage_precision": "fp32",
        "batch_size": 16,
        "max_tokens": 2048,
        "flush_every": 32,
    },
    "training": {"hidden_dims": [32], "batch_size": 32, "num_epochs": 3, "patience": 3},
    "logging": {"show_progress": False},
}


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_esm(tmp_path_factory.mktemp("esm") / "esm2_tiny", seed=0)


@pytest.fixture(scope="session")
def other_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same architecture with other weights: another model signature."""
    return make_tiny_esm(tmp_path_factory.mktemp("esm") / "esm2_other", seed=1)


@pytest.fixture(scope="session")
def raw_proteins(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("raw") / "protein_data.csv"
    protein_table(n_isolates=40, seed=1).to_csv(path, index=False)
    return path


def merge(base: dict, extra: dict) -> dict:
    out = {k: dict(v) for k, v in base.items()}
    for section, values in extra.items():
        out.setdefault(section, {}).update(values)
    return out


def write_esm_config(folder: Path, raw: Path, model: Path, extra: dict | None = None) -> Path:
    values = merge(
        FAST,
        {
            "paths": {"data_dir": str(folder / "data"), "raw_protein_file": str(raw)},
            "embeddings": {"model_ckpt": str(model)},
        },
    )
    values = merge(values, extra or {})
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


@pytest.fixture
def esm_config(tmp_path: Path, raw_proteins: Path, tiny_model: Path) -> Path:
    return write_esm_config(tmp_path, raw_proteins, tiny_model)


@pytest.fixture(scope="session")
def embedded(tmp_path_factory, raw_proteins: Path, tiny_model: Path) -> Path:
    """A config whose proteins are preprocessed, embedded and paired (read-only: copy it)."""
    from esm2pairs.config import load_config
    from esm2pairs.steps import embed, pairs, preprocess

    folder = tmp_path_factory.mktemp("embedded")
    cfg_path = write_esm_config(folder, raw_proteins, tiny_model)
    cfg = load_config(str(cfg_path))
    preprocess.run(cfg)
    embed.run(cfg)
    pairs.run(cfg)
    return cfg_path


@pytest.fixture
def embedded_copy(tmp_path: Path, embedded: Path) -> Path:
    """A private copy of `embedded` a test may write to."""
    shutil.copytree(embedded.parent, tmp_path / "e")
    path = tmp_path / "e" / "config.yaml"
    values = yaml.safe_load(path.read_text())
    values["paths"]["data_dir"] = str(tmp_path / "e" / "data")
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path
