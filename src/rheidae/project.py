"""A project folder in the lab's layout: `config/` (pre_process.yaml, model.yaml,
train_parms.yaml), `.data/` with the raw H5s, a Makefile with the lab's targets, run
from that folder: `make setup|install|preprocess|train|train-residual|smoke|clean`, and the
lab's training CLI, `scripts/train.py`.
Every relative path in the configs is read against that folder (where make runs)."""

from __future__ import annotations

import shutil
import sys
from importlib import resources
from pathlib import Path

CONFIGS = ("pre_process.yaml", "model.yaml", "train_parms.yaml")

MAKEFILE = """\
# Rheidae's targets, run from this folder (written by `rheidae init`; edit freely).
# Paths in config/*.yaml (.data, .pdata, results, checkpoints) are read from here.
PYTHON ?= python3
VENV ?= .venv
# what `make setup` installs: the lab-pipelines checkout (or any pip requirement)
LAB_PIPELINES ?= {source}
# torch first: elsewhere the plain pin pulls the CUDA build; for CPU only set
# TORCH_INDEX=--index-url https://download.pytorch.org/whl/cpu
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
# the project's own venv once `make setup` made it, else the rheidae that wrote this file
RHEIDAE_BIN ?= $(if $(wildcard $(VENV)/bin/rheidae),$(VENV)/bin/rheidae,{rheidae})
CFG = --config config/model.yaml --train-parms config/train_parms.yaml

.PHONY: setup install preprocess train train-residual smoke clean

setup install:
\t$(PYTHON) -m venv $(VENV)
\t$(VENV)/bin/pip install $(TORCH_INDEX) "$(TORCH)"
\t$(VENV)/bin/pip install -e "$(LAB_PIPELINES)"

preprocess:
\t$(RHEIDAE_BIN) preprocess --config config/pre_process.yaml

train:
\t$(RHEIDAE_BIN) train $(CFG)

train-residual:
\t$(RHEIDAE_BIN) train $(CFG) --predict-residual

smoke:
\t$(RHEIDAE_BIN) train $(CFG) --smoke --set data.num_workers=0

clean:
\trm -rf $(VENV) checkpoints results
"""


# the lab's own command, `python scripts/train.py --config ... --train-parms ...
# [--predict-residual]`, kept as typed: the same flags as `rheidae train`
TRAIN_SCRIPT = '''\
"""The lab's training CLI (written by `rheidae init`): `rheidae train` with the same flags.

    .venv/bin/python scripts/train.py --config config/model.yaml \\
        --train-parms config/train_parms.yaml [--predict-residual]
"""

import sys

from rheidae.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["train", *sys.argv[1:]]))
'''


def _source() -> str:
    """The checkout this package runs from (editable installs), else the package's name."""
    root = Path(__file__).resolve().parents[2]
    return str(root) if (root / "pyproject.toml").is_file() else "lab-pipelines"


def _rheidae() -> str:
    found = shutil.which("rheidae") or str(Path(sys.executable).with_name("rheidae"))
    return found if Path(found).is_file() else f"{sys.executable} -m rheidae"


def write_project(folder: str | Path) -> Path:
    """The Makefile, and the packaged default configs and `scripts/train.py` where the folder
    lacks them (a user's own are never overwritten); returns the Makefile's path."""
    root = Path(folder).resolve()
    (root / "config").mkdir(parents=True, exist_ok=True)
    (root / ".data").mkdir(exist_ok=True)
    for name in CONFIGS:
        dest = root / "config" / name
        if not dest.exists():
            dest.write_text(resources.files("rheidae.config").joinpath(name).read_text())
    script = root / "scripts" / "train.py"
    if not script.exists():
        script.parent.mkdir(exist_ok=True)
        script.write_text(TRAIN_SCRIPT)
    makefile = root / "Makefile"
    makefile.write_text(MAKEFILE.format(source=_source(), rheidae=_rheidae()))
    return makefile
