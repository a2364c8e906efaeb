# The two commands of the README: `make demo` runs the system, `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The runtime package (plugins/) and the development stack (devstack/, at the root).
DEVPATH := PYTHONPATH=plugins:.

.PHONY: demo demo-check test lint typecheck contracts bench lock clean

# One environment for the demo and the tests: production requirements, then the development stack
# and the test tools on top, then the package itself, editable (`pip install -e .`: the code that runs
# stays plugins/messagecenter, and its provider entry point gives Airflow the Message Center
# connection types). The Docker image installs requirements.txt and the package (`pip install .`).
$(STAMP): requirements.txt requirements-dev.txt requirements-test.txt requirements.in pyproject.toml setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt -r requirements-test.txt
	$(BIN)/python -m pip install --quiet -e .
	touch $(STAMP)

demo: $(STAMP)  ## embedded PostgreSQL + Airflow + Message Center, data in .demo/ (see README)
	$(DEVPATH) $(BIN)/python -m devstack.demo

demo-check: $(STAMP)  ## the demo headless in a fresh directory: push events, wait until Sent, stop
	$(DEVPATH) $(BIN)/python -m devstack.demo --check

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)  ## mypy on the runtime package
	$(BIN)/mypy

contracts: $(STAMP)  ## import contracts: the domain knows no Airflow, the runtime no dev stack
	$(DEVPATH) $(BIN)/lint-imports

test: lint typecheck contracts  ## ruff, mypy, import contracts, then pytest against a real PostgreSQL
	$(BIN)/python -m pytest

bench: $(STAMP)  ## benchmarks (not tests): ratios measured side by side
	$(DEVPATH) $(BIN)/python bench/intake.py
	$(DEVPATH) $(BIN)/python bench/pipeline.py
	$(DEVPATH) $(BIN)/python bench/archive.py
	$(DEVPATH) $(BIN)/python bench/delivery.py

lock:  ## re-pin requirements.txt from requirements.in in a clean venv
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet -r requirements.in
	{ echo "# Fully pinned from requirements.in (pip freeze of a clean venv, Python 3.11). Regenerate: make lock."; \
	  echo "# Production only: the development stack (demo, sinks, embedded PostgreSQL) is requirements-dev.txt."; \
	  .lock-venv/bin/pip freeze; } > requirements.txt
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .import_linter_cache build plugins/*.egg-info
