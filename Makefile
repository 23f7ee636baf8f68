# Tollgate. `make dev` and `make test` do all of their own set-up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
export JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION := 1
export CDK_DISABLE_VERSION_CHECK := 1
export CDK_DISABLE_CLI_TELEMETRY := true

LAYER_DIR := layers/build/python
# The functions' runtime (stacks/functions.py RUNTIME); in the stamp's name so a change rebuilds the layer.
LAYER_PYTHON := 3.14
LAYER_STAMP := layers/build/.stamp-py$(LAYER_PYTHON)
# `make dev PORT=8081` when 8080 is taken.
PORT ?= 8080

.PHONY: dev dev-reset test synth layer bench bench-local clean deps cost sim-hotkey

deps: $(VENV)/.stamp-deps node_modules/.stamp

$(VENV)/.stamp-deps: requirements.txt requirements-dev.txt pyproject.toml
	@echo "installing Python dependencies into $(VENV)… (the first time takes a few minutes)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PIP) install -q --upgrade pip
	@$(PIP) install -q -r requirements-dev.txt
	@# the build backend's warning box about editable installs says nothing this project needs
	@PYTHONWARNINGS=ignore $(PIP) install -q --no-deps -e .
	@touch $@

node_modules/.stamp: package.json package-lock.json
	@echo "installing the CDK CLI into node_modules…"
	@npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# The Lambda dependency layer: arm64 (aarch64) wheels, installed without Docker.
layer: $(LAYER_STAMP)
$(LAYER_STAMP): requirements.txt $(VENV)/.stamp-deps
	@echo "building the arm64 layer in layers/build…"
	@rm -rf layers/build && mkdir -p $(LAYER_DIR)
	@$(PIP) install -q --no-compile --platform manylinux2014_aarch64 --implementation cp \
		--python-version $(LAYER_PYTHON) --only-binary=:all: --target $(LAYER_DIR) -r requirements.txt
	@touch $@

dev: $(VENV)/.stamp-deps
	$(PY) -m local.dev --port $(PORT)

# The same, after forgetting the tables and signing secret kept in .tollgate from earlier sessions.
dev-reset: $(VENV)/.stamp-deps
	$(PY) -m local.dev --port $(PORT) --reset

# bcrypt at cost 12 (the deployed default) takes ~0.25 s a hash on an idle core; the tests check what keys
# do, not what they cost to guess, so they hash at cost 4 (and the local stack's handlers read the same).
# pytest-xdist workers: one per core plus one (`make test TEST_WORKERS=0` runs in one process). ~35 s of the
# suite waits rather than computes (a 35 s paced stream, agent worker processes, provider timeouts), and a
# worker that waits leaves its core idle; the extra worker fills it (2 cores, idle: 131 s with 2 workers, 110 s
# with 3, 107 s with 4). Tests sharing the CDK synthesis or a module's fixtures stay on one worker, the
# longest first (tests/conftest.py, --dist loadgroup).
# Bytecode is written even where the shell sets PYTHONDONTWRITEBYTECODE: each worker and each subprocess (moto
# server, CLIs, agent workers) would otherwise compile the project's modules, and pytest rewrite every test
# module's asserts, again (~5 s of CPU per worker).
TEST_WORKERS ?= $(shell $(PYTHON) -c 'import os; print(len(getattr(os, "sched_getaffinity", lambda _: range(os.cpu_count() or 1))(0)) + 1)')
test: deps $(LAYER_STAMP)
	PYTHONDONTWRITEBYTECODE= TOLLGATE_BCRYPT_ROUNDS=4 $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadgroup

synth: deps $(LAYER_STAMP)
	npx --no-install cdk synth --quiet

bench: $(VENV)/.stamp-deps
	$(PY) -m tests.bench

# What a `make dev` user waits for: chat and admin call medians with and without the agent worker.
bench-local: $(VENV)/.stamp-deps
	$(PY) -m tests.bench_local_stack 2>/dev/null | grep median

# What it costs to run, from the templates `synth` writes (tools/costing); last lines idle_usd_per_month=,
# usd_per_million_requests=.
cost: synth
	$(PY) -m tools.costing --cdk-out cdk.out

# One hot key under DynamoDB's documented limits: the real ledger against a simulated table (tools/sim_hotkey);
# last line hot_key_rps=, overshoot_usd=.
sim-hotkey: $(VENV)/.stamp-deps
	$(PY) -m tools.sim_hotkey

clean:
	rm -rf $(VENV) node_modules layers/build cdk.out
