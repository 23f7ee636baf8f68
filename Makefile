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

.PHONY: dev test synth layer bench clean deps cost

deps: $(VENV)/.stamp-deps node_modules/.stamp

$(VENV)/.stamp-deps: requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -r requirements-dev.txt
	$(PIP) install -q --no-deps -e .
	touch $@

node_modules/.stamp: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The Lambda dependency layer: arm64 (aarch64) wheels, installed without Docker.
layer: $(LAYER_STAMP)
$(LAYER_STAMP): requirements.txt $(VENV)/.stamp-deps
	rm -rf layers/build && mkdir -p $(LAYER_DIR)
	$(PIP) install -q --no-compile --platform manylinux2014_aarch64 --implementation cp \
		--python-version $(LAYER_PYTHON) --only-binary=:all: --target $(LAYER_DIR) -r requirements.txt
	touch $@

dev: $(VENV)/.stamp-deps
	$(PY) -m local.dev

test: deps $(LAYER_STAMP)
	$(PY) -m pytest -q

synth: deps $(LAYER_STAMP)
	npx --no-install cdk synth --quiet

bench: $(VENV)/.stamp-deps
	$(PY) -m tests.bench

# What it costs to run, from the templates `synth` writes (tools/costing); last lines idle_usd_per_month=,
# usd_per_million_requests=.
cost: synth
	$(PY) -m tools.costing --cdk-out cdk.out

clean:
	rm -rf $(VENV) node_modules layers/build cdk.out
