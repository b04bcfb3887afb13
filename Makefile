# Two entry points: `make demo` (set up, make demo data, run each pipeline on it) and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO ?= demo
DEMO_ESM ?= demo_esm2
# Rheidae's targets (the lab's `make preprocess|train|...`, namespaced) use the config files
# in $(RHEIDAE)/config: pre_process.yaml, model.yaml, train_parms.yaml
RHEIDAE ?= demo_rheidae
RH_CFG = --config config/model.yaml --train-parms config/train_parms.yaml
DEMO_BELKA ?= demo_belka

.PHONY: venv demo demo-voxelflex demo-esm2pairs demo-rheidae demo-belka test lint bench images images-cuda \
	bench-esm2pairs bench-rheidae bench-belka bench-cpu-limit compile constraints docs clean rheidae-setup rheidae-install rheidae-preprocess \
	rheidae-train rheidae-train-residual rheidae-smoke rheidae-clean

# torch first, pinned: a plain `torch` requirement would pull a multi-GB CUDA build.
# Every other package at the version images/constraints.txt pins: the one the images install.
$(BIN)/voxelflex: pyproject.toml images/constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -c images/constraints.txt -e '.[dev,s3,kfp]'
	touch $(BIN)/voxelflex

venv: $(BIN)/voxelflex

# The main jobs: each whole Kubeflow pipeline on its demo data, here, through kfp.local.
demo: demo-voxelflex demo-esm2pairs demo-rheidae demo-belka

demo-voxelflex: venv
	$(BIN)/voxelflex demo-data --out $(DEMO)
	$(BIN)/voxelflex pipeline run --local --config $(DEMO)/config.yaml --temperature 320 --temperature 335 --temperature 450

demo-esm2pairs: venv
	$(BIN)/esm2pairs demo-data --out $(DEMO_ESM)
	$(BIN)/esm2pairs pipeline run --local --config $(DEMO_ESM)/config.yaml

demo-rheidae: venv
	$(BIN)/rheidae demo-data --out $(RHEIDAE)
	cd $(RHEIDAE) && $(abspath $(BIN))/rheidae pipeline run --local \
		--pre-process config/pre_process.yaml $(RH_CFG) --pipeline-root kfp_local

demo-belka: venv
	$(BIN)/belka demo-data --out $(DEMO_BELKA)
	$(BIN)/belka pipeline run --local --config $(DEMO_BELKA)/config.yaml \
		--pipeline-root $(DEMO_BELKA)/kfp_local

# the lab's targets run in the project folder $(RHEIDAE) (its own Makefile, `rheidae init`)
rheidae-setup rheidae-install: venv

rheidae-preprocess rheidae-train rheidae-train-residual rheidae-smoke: venv
	$(MAKE) -C $(RHEIDAE) $(@:rheidae-%=%) RHEIDAE_BIN=$(abspath $(BIN))/rheidae

rheidae-clean:
	rm -rf $(RHEIDAE)/checkpoints $(RHEIDAE)/results

# pipelines/compiled/*.yaml (kept in git; a test fails when it is stale)
compile: venv
	$(BIN)/voxelflex pipeline compile
	$(BIN)/esm2pairs pipeline compile
	$(BIN)/rheidae pipeline compile
	$(BIN)/belka pipeline compile

# after changing a dependency: pin what is now installed (then run the tests on it)
constraints: venv
	$(BIN)/python -m pipekit.release constraints > images/constraints.txt

lint: venv
	$(BIN)/ruff check src tests bench components pipelines
	$(BIN)/ruff format --check src tests bench components pipelines
	$(BIN)/mypy --ignore-missing-imports src

# the manuals under docs/ as a site in site/; --strict: a broken link or anchor fails
docs: venv
	$(BIN)/mkdocs build --strict --quiet

# The CPU image every step runs in on a cluster (docs/platform.md: images): on any machine with Docker.
images:
	images/build.sh cpu

images-cuda:
	images/build.sh cuda

# The container tests (marked `container`) need the image of this checkout: built first where
# a Docker daemon answers (cached layers: seconds), else they skip, saying why (CI: they fail).
test: venv lint docs
	@if docker info >/dev/null 2>&1; then images/build.sh cpu; \
	else echo "no Docker daemon: the container tests will skip (CI=true: fail)"; fi
	$(BIN)/pytest -q -n auto --maxprocesses=4

bench: venv
	$(BIN)/python bench/bench_preprocess.py
	$(BIN)/python bench/bench_loader.py
	$(BIN)/python bench/bench_storage.py
	$(BIN)/python bench/bench_ddp.py
	$(BIN)/python bench/bench_esm2pairs.py
	$(BIN)/python bench/bench_rheidae.py
	$(BIN)/python bench/bench_belka.py

bench-belka: venv
	$(BIN)/python bench/bench_belka.py

bench-rheidae: venv
	$(BIN)/python bench/bench_rheidae.py

bench-esm2pairs: venv
	$(BIN)/python bench/bench_esm2pairs.py

bench-cpu-limit: venv images  # needs Docker
	$(BIN)/python bench/bench_cpu_limit.py

clean:
	rm -rf $(DEMO) $(DEMO_ESM) $(RHEIDAE) $(DEMO_BELKA) outputs processed bench_out site .pytest_cache
