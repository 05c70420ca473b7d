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

unit: setup  ## pytest: modules, jobs, scripts (no sandbox needed)
	$(PYTEST) -m "not sandbox and not sandbox_node" -n 2 --dist loadfile

molecule: sandbox-up  ## Molecule scenarios against the sandbox
	$(SANDBOX_ENV) $(BIN)/molecule test --all

# --durations: the slowest tests in every CI log, to see where the time goes.
# test_ml.py runs on a second sandbox beside the other tests (scripts/e2e.sh).
e2e: sandbox-up  ## end-to-end: bad inputs, check mode, timings on the sandbox
	scripts/e2e.sh --durations=15

# test_dask.py (the Dask backend on the node + a worker node) needs no Molecule sandbox either: in `make test` it runs
# after the unit tests, both beside Molecule (which keeps about one of the two cores busy), on a sandbox of its own
# (emulator 5075, node 127.0.0.4:2224, workers 127.0.4.i), instead of after test_ml.py on the e2e run's second
# sandbox. Their logs follow Molecule's; each phase prints how long it took. (The copy's own log is <copy>.log:
# another name than .cache/e2e-dask.log, which e2e.sh's output goes to.)
DASK_E2E = tests/sandbox/test_dask.py
BESIDE_MOLECULE = FRAUD_DEMO_E2E_APART=$(DASK_E2E) FRAUD_DEMO_E2E_ONLY_APART=1 FRAUD_DEMO_E2E_COPY=.cache/e2e-dask-copy \
  FRAUD_DEMO_E2E_SANDBOX_PORT=5075 FRAUD_DEMO_E2E_NODE_ADDR=127.0.0.4 FRAUD_DEMO_E2E_NODE_PORT=2224

test: lint sandbox-up  ## everything CI runs
	@mkdir -p .cache; rm -f .cache/unit.status .cache/e2e-dask.status; start=$$(date +%s); \
	  since() { echo "$$(( $$(date +%s) - start )) s"; }; \
	  ( set +e; $(MAKE) --no-print-directory unit >.cache/unit.log 2>&1; echo $$? >.cache/unit.status; \
	    echo "make test: unit tests done after $$(since)" >>.cache/unit.log; \
	    $(BESIDE_MOLECULE) scripts/e2e.sh --durations=5 >.cache/e2e-dask.log 2>&1; echo $$? >.cache/e2e-dask.status; \
	    echo "make test: $(DASK_E2E) done after $$(since)" >>.cache/e2e-dask.log ) & beside=$$!; \
	  molecule=0; $(MAKE) --no-print-directory molecule || molecule=$$?; \
	  echo "make test: Molecule exited $$molecule after $$(since)"; wait $$beside || true; \
	  unit_status=$$(cat .cache/unit.status 2>/dev/null || echo 1); dask_status=$$(cat .cache/e2e-dask.status 2>/dev/null || echo 1); \
	  echo "---- make unit (beside Molecule) exited $$unit_status ----"; cat .cache/unit.log; \
	  echo "---- $(DASK_E2E) (beside Molecule, after the unit tests) exited $$dask_status ----"; cat .cache/e2e-dask.log; \
	  [ $$molecule -eq 0 ] && [ $$unit_status -eq 0 ] && [ $$dask_status -eq 0 ]
	@start=$$(date +%s); status=0; FRAUD_DEMO_E2E_APART=tests/sandbox/test_ml.py FRAUD_DEMO_E2E_IGNORE=$(DASK_E2E) \
	  $(MAKE) --no-print-directory e2e || status=$$?; \
	  echo "make test: e2e exited $$status after $$(( $$(date +%s) - start )) s"; exit $$status
	@echo "make test: all checks passed"

clean: sandbox-down  ## remove the venv, collections and caches
	rm -rf $(VENV) collections .cache .pytest_cache .ruff_cache
