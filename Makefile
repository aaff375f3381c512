# ratehound: the index of what a developer can do. `make help` lists the targets.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SEEDS ?= 101 102 103 104 105
DEV ?=
SOAK_MINUTES ?= 10
ARRIVAL ?= in-order
export PYTHONDONTWRITEBYTECODE=1

.PHONY: help deps install demo test test-fast lint docs bench eval soak clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 14

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)  ## create .venv and install ratehound with its dev tools

deps:  ## check for redis-server, prometheus (promtool), nginx-light; install them from Debian where apt and root are there
	@PY=$(PY) bash lab/deps.sh

demo: deps $(STAMP)  ## run broker + worker + simulated attack traffic; watch decisions live (Ctrl-C stops all)
	$(BIN)/ratehound demo

test: deps $(STAMP)  ## the whole test suite: unit, doctests, integration (real broker, Redis, promtool)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)  ## unit tests and doctests only
	$(BIN)/python -m pytest -q -m 'not integration and not slow'

lint: $(STAMP)  ## ruff lint; mypy on detectors/, stream/, backtest/ and lab/
	$(BIN)/ruff check stream detectors backtest traffic lab tests
	$(BIN)/mypy detectors stream backtest lab

docs: $(STAMP)  ## regenerate what the rule registry writes: the README's rule table, deploy/config/thresholds.yaml
	$(BIN)/python -m lab.docs

eval: $(STAMP)  ## robustness matrix + in-distribution rows: replay + scorer on held-out SEEDS (101-105), the dev hour if beside the repo (DEV=dir; ARRIVAL=out-of-step: as a worker reads them)
	$(BIN)/python -m lab.evaluate --seeds $(SEEDS) --arrival $(ARRIVAL) $(if $(DEV),--dev $(DEV))

bench: $(STAMP)  ## throughput, latency, memory and recovery benchmark through the real broker
	$(BIN)/python -m lab.bench

soak: $(STAMP)  ## one worker, steady load, churning keys for SOAK_MINUTES (10): RSS, lag, keys, probe latency, flat?
	$(BIN)/python -m lab.soak --minutes $(SOAK_MINUTES)

clean:  ## remove the virtualenv, caches and generated files
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache .mypy_cache out
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
