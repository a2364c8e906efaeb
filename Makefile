# The two commands of the README: `make demo` runs the system, `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo demo-check test lint bench lock clean

$(STAMP): requirements.txt requirements-test.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt -r requirements-test.txt
	touch $(STAMP)

demo: $(STAMP)  ## embedded PostgreSQL + Airflow + Message Center, data in .demo/ (see README)
	PYTHONPATH=plugins $(BIN)/python -m messagecenter.demo

demo-check: $(STAMP)  ## the demo headless in a fresh directory: push events, wait until Sent, stop
	PYTHONPATH=plugins $(BIN)/python -m messagecenter.demo --check

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint  ## ruff, then pytest against a real PostgreSQL
	$(BIN)/python -m pytest

bench: $(STAMP)  ## benchmarks (not tests): ratios measured side by side
	PYTHONPATH=plugins $(BIN)/python bench/intake.py
	PYTHONPATH=plugins $(BIN)/python bench/pipeline.py
	PYTHONPATH=plugins $(BIN)/python bench/archive.py

lock:  ## re-pin requirements.txt from requirements.in in a clean venv
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet -r requirements.in
	{ echo "# Fully pinned from requirements.in (pip freeze of a clean venv, Python 3.11). Regenerate: make lock"; \
	  .lock-venv/bin/pip freeze; } > requirements.txt
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
