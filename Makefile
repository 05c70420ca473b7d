# fraud-demo: two commands do everything on a fresh machine.
#   make demo   sandbox AWS + the pipeline on it + a summary of what exists
#   make test   lint, unit tests, Molecule scenarios and an end-to-end sandbox run
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
BIN := $(VENV)/bin
INVENTORY_SANDBOX := inventory/sandbox
# Every sandbox command runs with the emulator's endpoint and dummy credentials.
SANDBOX_ENV := set -a && . .sandbox/env && set +a &&
PYTEST := $(BIN)/python -m pytest
# Molecule and ansible-lint call ansible-* by name.
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: help setup apt-packages sandbox-up sandbox-down demo test lint unit molecule e2e clean

help:  ## list the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.txt requirements-dev.txt files/requirements-node.txt files/pyproject.toml scripts/setup.sh
	@scripts/setup.sh venv
	@$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e files 2> >(grep -v 'is ignored' >&2)
	@touch $@

collections/.installed: requirements.yml scripts/setup.sh $(VENV)/.installed
	@scripts/setup.sh collections
	@touch $@

# Debian packages for the sandbox node (debootstrap, systemd-nspawn, zstd, ssh); checked each time, cheap.
apt-packages:
	@scripts/setup.sh apt

setup: $(VENV)/.installed collections/.installed apt-packages  ## build .venv, install collections and packages (quiet when done)
	@:

sandbox-up: setup  ## start the local AWS emulator and the disposable node (FRAUD_DEMO_NODES=N: plus N-1 workers); writes .sandbox/env
	@scripts/sandbox.sh up
	@scripts/sandbox-node.sh up

sandbox-down:  ## stop the sandbox (emulated resources, the node and every worker are gone)
	@scripts/sandbox-node.sh down
	@scripts/sandbox.sh down

# The loop you can watch: the pipeline with its first champion and drift report, then a later, drifted batch lands
# in raw/ and the retrain loop ingests it, reports the drift, trains and gates (promotes or refuses, with the reason).
demo: sandbox-up  ## run the whole pipeline on the sandbox, then a drifted batch and the retrain loop; print what exists
	@$(SANDBOX_ENV) $(BIN)/ansible-playbook -i $(INVENTORY_SANDBOX) site.yml
	@$(SANDBOX_ENV) $(BIN)/ansible-playbook -i $(INVENTORY_SANDBOX) playbooks/dataset.yml -e fraud_demo_synthetic_drift=true
	@$(SANDBOX_ENV) $(BIN)/ansible-playbook -i $(INVENTORY_SANDBOX) playbooks/retrain.yml
	@$(SANDBOX_ENV) $(BIN)/python scripts/summary.py

lint: setup  ## yamllint, ansible-lint (production profile), ruff
	$(BIN)/yamllint --strict .
	$(BIN)/ansible-lint --offline
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# --timeout: a unit test that hangs (the slowest take ~2 min under CI's load) fails with its stack.
unit: setup  ## pytest: modules, jobs, scripts (no sandbox needed)
	$(PYTEST) -m "not sandbox and not sandbox_node" -n 2 --dist loadfile --timeout=600 --durations=10

molecule: sandbox-up  ## Molecule scenarios against the sandbox
	$(SANDBOX_ENV) $(BIN)/molecule test --all

# --durations: the slowest tests in every CI log, to see where the time goes.
# test_ml.py runs on a second sandbox beside the other tests (scripts/e2e.sh).
e2e: sandbox-up  ## end-to-end: bad inputs, check mode, timings on the sandbox
	scripts/e2e.sh --durations=15

# Lint beside the sandbox's start (on a fresh machine: the node image and its wheelhouse). Then phase 1: the
# Molecule scenarios one by one, beside them the unit tests then tests/sandbox/test_dask.py on a sandbox of its
# own; phase 2: make e2e. Each part has a time limit; the log ends with a summary of every part.
test: setup  ## everything CI runs
	@$(MAKE) --no-print-directory -j2 --output-sync=target lint sandbox-up
	@scripts/test-all.sh

clean: sandbox-down  ## remove the venv, collections and caches
	rm -rf $(VENV) collections .cache .pytest_cache .ruff_cache
