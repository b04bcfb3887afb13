"""Belka fixtures: a small demo library in the BELKA layout (made by the demo generator
with RDKit, read only), and per-test configs whose outputs go under the test's folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from belka.config import load_config
from belka.demo import Demo, make_demo

TINY = {
    # a small model so a training epoch takes about a second on 2 cores
    "model": {"depth": 16, "num_heads": 2, "num_layers": 2, "ff_dim": 32},
    "training": {"batch_size": 64, "buffer_size": 256, "epochs": 2},
    "features": {"shard_size": 150, "ecfp_bits": 256},
}


@pytest.fixture(scope="session")
def belka_demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    return make_demo(
        tmp_path_factory.mktemp("belka_demo"), n_train=500, n_test=120, n_extra=80, seed=1
    )


def write_config(path: Path, demo: Demo, extra: dict | None = None) -> Path:
    """The demo's config with tiny settings, reading the demo's inputs, writing under
    `path`."""
    cfg = yaml.safe_load(demo.config.read_text())
    for section, values in TINY.items():
        cfg.setdefault(section, {}).update(values)
    cfg["data"] = {"root": str(demo.root / "raw"), "working": str(path / "work")}
    for section, values in (extra or {}).items():
        cfg.setdefault(section, {}).update(values)
    path.mkdir(parents=True, exist_ok=True)
    out = path / "config.yaml"
    out.write_text(yaml.safe_dump(cfg))
    return out


@pytest.fixture
def belka_config(tmp_path: Path, belka_demo: Demo) -> Path:
    return write_config(tmp_path, belka_demo)


@pytest.fixture
def belka_cfg(belka_config: Path):
    return load_config(str(belka_config))


@pytest.fixture(scope="session")
def prepared(tmp_path_factory: pytest.TempPathFactory, belka_demo: Demo) -> Path:
    """generate_parquet, get_vocab, make_dataset and create_val_dataset run once; tests copy
    the working folder before writing into it (`prepared_cfg`)."""
    from belka.steps import create_val_dataset, generate_parquet, get_vocab, make_dataset

    root = tmp_path_factory.mktemp("belka_prepared")
    cfg = load_config(str(write_config(root, belka_demo)))
    for step in (generate_parquet, get_vocab, make_dataset, create_val_dataset):
        step.run(cfg)
    return root


@pytest.fixture
def prepared_cfg(prepared: Path, tmp_path: Path, belka_demo: Demo):
    shutil.copytree(prepared / "work", tmp_path / "work")
    return load_config(str(write_config(tmp_path, belka_demo)))


def run_belka(config: Path, *args: str, crash: str | None = None) -> subprocess.CompletedProcess:
    """`python -m belka --quiet --config CONFIG ARGS` in its own process; `crash` names a
    crash point where it kills itself (`PIPEKIT_CRASH_AT`)."""
    env = {k: v for k, v in os.environ.items() if k != "PIPEKIT_CRASH_AT"}
    env["OMP_NUM_THREADS"] = "1"
    if crash:
        env["PIPEKIT_CRASH_AT"] = crash
    cmd = [sys.executable, "-m", "belka", "--quiet", "--config", str(config), *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
