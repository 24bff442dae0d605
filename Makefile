# clustermass: every target creates the virtualenv from requirements.lock first when it is
# missing or stale, then calls the one CLI (`clustermass ...`).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PRESET ?= quick
WORKERS ?= 2
# Training processes for the folds (single-threaded each); 2 gave 1.1-1.6x on 2 cores (README).
FOLD_JOBS ?= 1
# CNN training schedule of another preset (e.g. SCHEDULE=fast on PRESET=full); empty: PRESET's own.
SCHEDULE ?=
DATASET_SOURCE ?=
SUBMISSION ?=
SEEDS ?= 0
PYTHON ?= python3
STORE ?= $(CURDIR)/data/ria-store
TAG ?=

# ACCEL=gpu: TensorFlow with CUDA (requirements-gpu.lock) in its own virtualenv, .venv-gpu, so
# that the CPU environment stays as the lock made it; the entry's hardware field names the GPU.
ACCEL ?= cpu
ifeq ($(ACCEL),gpu)
VENV := $(CURDIR)/.venv-gpu
LOCK_ARGS := -r <(grep -v '^tensorflow_cpu==' requirements.lock) -r requirements-gpu.lock
TORCH_LOCK := requirements-torch-gpu.lock
else ifeq ($(ACCEL),cpu)
VENV := $(CURDIR)/.venv
LOCK_ARGS := -r requirements.lock
TORCH_LOCK := requirements-torch.lock
else
$(error ACCEL=$(ACCEL) is unknown: use ACCEL=cpu (the default) or ACCEL=gpu)
endif
STAMP := $(VENV)/.installed
CLI := $(VENV)/bin/clustermass
BASELINES := --entry lx_iterative --entry lx_truth --entry mean --entry total_counts \
             --entry oracle_mgas --entry oracle_yx --entry oracle_lx_t

# Config, caches and scratch stay inside build/: runs leave nothing in the user's home.
export XDG_CONFIG_HOME := $(CURDIR)/build/config
export XDG_CACHE_HOME := $(CURDIR)/build/cache
export MPLCONFIGDIR := $(CURDIR)/build/mpl
export KERAS_HOME := $(CURDIR)/build/keras
export MPLBACKEND := Agg
export TF_CPP_MIN_LOG_LEVEL := 2
export PYTHONHASHSEED := 0
export CLUSTERMASS_RESPONSES ?= $(abspath $(CURDIR)/../shared/data/chandra)
export CLUSTERMASS_BUILD := $(CURDIR)/build
export PATH := $(VENV)/bin:$(PATH)
export PRESET WORKERS DATASET_SOURCE FOLD_JOBS SCHEDULE
# DataLad commits need an identity; use the user's when git has one.
GIT_NAME := $(shell git config user.name 2>/dev/null)
ifeq ($(GIT_NAME),)
export GIT_AUTHOR_NAME := clustermass
export GIT_COMMITTER_NAME := clustermass
export GIT_AUTHOR_EMAIL := clustermass@localhost
export GIT_COMMITTER_EMAIL := clustermass@localhost
endif

.PHONY: help venv data reference baselines evaluate leaderboard science demo test test-slow bench \
        image image-check browser sandbox torch test-torch-extra clean clean-data release report

help: ## List the targets
	@echo "clustermass: make <target> [PRESET=ci|quick|fast|full] [WORKERS=N] [DATASET_SOURCE=...]"
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): requirements.lock $(if $(filter gpu,$(ACCEL)),requirements-gpu.lock) pyproject.toml
	@echo "Creating $(VENV) from requirements.lock (ACCEL=$(ACCEL))"
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check $(LOCK_ARGS)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@mkdir -p build/config build/cache build/mpl build/keras
	@touch $@

venv: $(STAMP) ## Create the virtualenv from the lock file

data: $(STAMP) ## Fetch (DATASET_SOURCE=...) or regenerate data/$(PRESET), then verify it
	$(CLI) data --preset $(PRESET) --workers $(WORKERS)

reference: $(STAMP) ## Train the reference CNN (the study's layer pattern) over the ten folds and score it
	$(CLI) train --preset $(PRESET) --entry reference --seeds $(SEEDS)

baselines: $(STAMP) ## Fit the L_X and trivial baselines over the ten folds and score them
	$(CLI) train --preset $(PRESET) $(BASELINES)

# Code submissions train over the harness's seeds (0 1 2) unless SEEDS is given explicitly.
EVALUATE_SEEDS = $(if $(filter command line environment,$(origin SEEDS)),--seeds $(SEEDS))
evaluate: $(STAMP) ## Score a submission: make evaluate SUBMISSION=path [UNSANDBOXED=1]
	@if [ -z "$(SUBMISSION)" ]; then echo "error: SUBMISSION is not set: make evaluate SUBMISSION=path/to/submission (see: clustermass format)" >&2; exit 2; fi
	@if [ ! -e "$(SUBMISSION)" ]; then echo "error: SUBMISSION=$(SUBMISSION) does not exist" >&2; exit 2; fi
	$(CLI) evaluate --preset $(PRESET) "$(SUBMISSION)" $(EVALUATE_SEEDS) $(if $(UNSANDBOXED),--unsandboxed)

leaderboard: $(STAMP) ## Render leaderboard/site (HTML + Markdown) from the entries of PRESET
	$(CLI) leaderboard --preset $(PRESET)

.PHONY: testsets hidden
testsets: $(STAMP) ## Generate the shift track's test sets in data/$(PRESET)/testsets (resumable)
	$(CLI) testsets --preset $(PRESET) --workers $(WORKERS)

hidden: $(STAMP) ## Maintainer: generate the hidden set from HIDDEN_SECRET into CLUSTERMASS_HIDDEN/$(PRESET)
	$(CLI) testsets --preset $(PRESET) --workers $(WORKERS) --hidden

# Images for `make fits`: ID="c0001_e0_x c0001_e0_y" (image ids) or CLUSTER=<cluster id>.
ID ?=
CLUSTER ?=
.PHONY: fits
fits: $(STAMP) ## Write images of data/$(PRESET) as FITS to build/fits/$(PRESET): make fits ID=... or CLUSTER=N
	@if [ -z "$(strip $(ID)$(CLUSTER))" ]; then echo "error: neither ID nor CLUSTER is set: make fits ID=c0001_e0_x (image ids, see catalog.csv) or make fits CLUSTER=1" >&2; exit 2; fi
	$(CLI) export-fits --preset $(PRESET) $(if $(strip $(ID)),--id $(ID)) $(if $(strip $(CLUSTER)),--cluster $(CLUSTER))

report: $(STAMP) ## Write the science report of data/$(PRESET)
	$(CLI) report --preset $(PRESET)

# The science check's schedule is fixed before the run: the preset's own training schedule
# (SCHEDULE overrides it and is recorded in the entry), seed 0, ten folds.
science: $(STAMP) ## Full science check of PRESET: data, shift sets, report, baselines, reference CNN, leaderboard, science.md
	@set -e; for stage in data testsets report baselines reference leaderboard; do \
	  $(MAKE) --no-print-directory $$stage PRESET=$(PRESET); done
	$(CLI) science --preset $(PRESET)

release: $(STAMP) ## Tag data/$(PRESET) as TAG and push it to the RIA store STORE
	@if [ -z "$(TAG)" ]; then echo "error: TAG is not set: make release TAG=v1.0 [STORE=...]" >&2; exit 2; fi
	$(CLI) release --preset $(PRESET) --store $(STORE) --tag $(TAG)

.PHONY: check-version
check-version: $(STAMP) ## Check data/$(PRESET) is byte-identical to the fingerprint make release recorded
	$(CLI) check-version --preset $(PRESET)

demo: $(STAMP) ## The main job on the embedded default (PRESET=quick), timed stage by stage
	@set -e; t0=$$(date +%s); log=build/demo-times.txt; mkdir -p build; : > $$log; \
	for stage in data reference baselines leaderboard; do \
	  s=$$(date +%s); $(MAKE) --no-print-directory $$stage PRESET=$(PRESET); \
	  echo "$$stage: $$(( $$(date +%s) - s )) s" | tee -a $$log; \
	done; \
	echo "demo (PRESET=$(PRESET)) total: $$(( $$(date +%s) - t0 )) s" | tee -a $$log; \
	echo; cat leaderboard/site/LEADERBOARD.md; echo; \
	echo "figures and entry pages: leaderboard/site/index.html"

torch: $(STAMP) ## Install the optional PyTorch extra from requirements-torch.lock (CUDA build with ACCEL=gpu)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r $(TORCH_LOCK)

browser: ## Install Debian's chromium for the page tests when missing (needs root and apt)
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } \
	  || echo "chromium is not installed (needs root + apt): the browser tests will be skipped"

sandbox: ## Install Debian's bubblewrap (the code-submission sandbox) when missing (needs root and apt)
	@command -v bwrap >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && { apt-get install -y -qq bubblewrap >/dev/null 2>&1 \
	       || { apt-get update -qq && apt-get install -y -qq bubblewrap >/dev/null; }; }; } \
	  || echo "bubblewrap is not installed (needs root + apt): code submissions cannot be sandboxed"

# The tests use the PyTorch extra where it installs (a CPU wheel; 15 s from a local copy);
# elsewhere its tests are skipped, saying why.
test-torch-extra: $(STAMP)
	@$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-torch.lock \
	  >/dev/null 2>&1 || echo "the PyTorch extra is not installable here: its tests will be skipped"

test: $(STAMP) browser sandbox test-torch-extra ## Run the test suite (slow and bench tests excluded)
	$(VENV)/bin/pytest -q

test-slow: $(STAMP) ## Run the slow end-to-end tests too
	$(VENV)/bin/pytest -q -m "not bench"

bench: $(STAMP) ## Run the pytest-benchmark suites; figures go to build/bench.json
	@mkdir -p build
	$(VENV)/bin/pytest -q -m bench --benchmark-json=build/bench.json
	@echo "benchmark figures: build/bench.json"

BASE_IMAGE ?= debian:bookworm-slim
image: ## Build the container image with the system's docker (BASE_IMAGE=...)
	@if [ -s "$$SSL_CERT_FILE" ]; then cp "$$SSL_CERT_FILE" .ci/build-ca.pem; fi; \
	docker build --build-arg BASE_IMAGE=$(BASE_IMAGE) \
	  --build-arg CLUSTERMASS_CODE_VERSION=$$(git describe --always --dirty --abbrev=12 2>/dev/null || echo unknown) \
	  -t clustermass:latest .; rc=$$?; rm -f .ci/build-ca.pem; exit $$rc

image-check: ## Build the image with a private dockerd and run make test inside it
	bash .ci/image-check.sh

clean: ## Remove build outputs, results and the rendered site (keeps data/ and .venv)
	rm -rf build results leaderboard/site

clean-data: ## Remove the dataset data/$(PRESET)
	@if [ -d data/$(PRESET) ]; then chmod -R u+w data/$(PRESET) && rm -rf data/$(PRESET); fi
	@echo "removed data/$(PRESET)"
