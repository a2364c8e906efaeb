# The two commands of the README: `make demo` runs the system, `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The runtime package (plugins/) and the development stack (devstack/, at the root).
DEVPATH := PYTHONPATH=plugins:.

.PHONY: demo demo-check demo-info test lint typecheck contracts docs config-docs bench lock clean

# One environment for the demo, the tests and the docs: production requirements, then the development
# stack, the test tools and the docs tools on top, then the package itself, editable (`pip install -e .`:
# the code that runs stays plugins/messagecenter, and its provider entry point gives Airflow the Message
# Center connection types). The Docker image installs requirements.txt and the package (`pip install .`).
$(STAMP): requirements.txt requirements-dev.txt requirements-test.txt requirements-docs.txt requirements.in pyproject.toml setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt -r requirements-test.txt
	$(BIN)/python -m pip install --quiet -e .
	touch $(STAMP)

demo: $(STAMP)  ## embedded PostgreSQL + Airflow + Message Center, data in .demo/ (see README)
	$(DEVPATH) $(BIN)/python -m devstack.demo

demo-check: $(STAMP)  ## the demo headless in a fresh directory: events until Sent, the README's tour, stop
	$(DEVPATH) $(BIN)/python -m devstack.demo --check

demo-info: $(STAMP)  ## print the demo's banner again (URLs, login, token, files) from .demo/, starting nothing
	$(DEVPATH) $(BIN)/python -m devstack.demo --info

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)  ## mypy on the runtime package, the DAG files, the dev stack and the benchmarks
	$(BIN)/mypy

contracts: $(STAMP)  ## import contracts: the domain knows no Airflow, the runtime no dev stack
	$(DEVPATH) $(BIN)/lint-imports

test: lint typecheck contracts  ## ruff, mypy, import contracts, then pytest against a real PostgreSQL
	$(BIN)/python -m pytest

# NO_MKDOCS_2_WARNING: Material's end-of-life banner, printed on every build, says nothing about our pages.
docs: $(STAMP)  ## the documentation site (docs/, mkdocs.yml) into site/; broken links and nav warnings fail
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

config-docs: $(STAMP)  ## docs/configuration.md from the settings' declarations (a test checks it is current)
	PYTHONPATH=plugins $(BIN)/python -m messagecenter.core.settings > docs/configuration.md

# One benchmark alone: $(DEVPATH) $(BIN)/python bench/<name>.py; a smoke run of them all: MC_BENCH_SCALE=0.01.
bench: $(STAMP)  ## benchmarks (not tests): ratios measured side by side, each module in its own process
	$(DEVPATH) $(BIN)/python -m bench

lock:  ## re-pin requirements.txt from requirements.in in a clean venv
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet -r requirements.in
	{ echo "# Fully pinned from requirements.in (pip freeze of a clean venv, Python 3.11). Regenerate: make lock."; \
	  echo "# Production only: the development stack (demo, sinks, embedded PostgreSQL) is requirements-dev.txt."; \
	  .lock-venv/bin/pip freeze; } > requirements.txt
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) site .pytest_cache .ruff_cache .mypy_cache .import_linter_cache build plugins/*.egg-info
