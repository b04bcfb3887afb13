# Two entry points: `make demo` (set up, make demo data, run the main job) and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO ?= demo

.PHONY: venv demo test lint bench clean

# torch first, pinned: a plain `torch` requirement would pull a multi-GB CUDA build.
$(BIN)/voxelflex: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev,s3,kfp]'
	touch $(BIN)/voxelflex

venv: $(BIN)/voxelflex

demo: venv
	$(BIN)/voxelflex demo-data --out $(DEMO)
	$(BIN)/voxelflex preprocess --config $(DEMO)/config.yaml
	$(BIN)/voxelflex train --config $(DEMO)/config.yaml
	$(BIN)/voxelflex predict --config $(DEMO)/config.yaml --split test --temperature 320 --temperature 335 --temperature 450
	$(BIN)/voxelflex evaluate --config $(DEMO)/config.yaml
	$(BIN)/voxelflex visualize --config $(DEMO)/config.yaml

lint: venv
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

test: venv lint
	$(BIN)/pytest -q

bench: venv
	$(BIN)/python bench/bench_preprocess.py
	$(BIN)/python bench/bench_loader.py

clean:
	rm -rf $(DEMO) outputs processed bench_out .pytest_cache
