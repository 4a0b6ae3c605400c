# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
# Both install what they need: system packages (apt, when root), the venv, pinned deps.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# extra Debian packages: chromium for the browser tests
SYSDEPS_EXTRA := chromium
export PYTHONPATH := $(CURDIR)/plugins:$(CURDIR)
export AIRFLOW__CORE__LOAD_EXAMPLES := False

.PHONY: help setup sysdeps demo test test-fast up down stack-up stack-down stack-status bench lint clean

help:
	@echo "make demo    - set up, start the local stack, run every DAG for one interval, print what landed"
	@echo "make test    - set up and run every test tier against real local services"
	@echo "make up      - start the local stack plus Airflow (UI on http://localhost:8080); make down stops it"
	@echo "make bench   - run the benchmarks (one: make bench B=<name>)"

sysdeps:
	@include/scripts/sysdeps.sh $(SYSDEPS_EXTRA)

$(STAMP): requirements.txt requirements-dev.txt constraints.txt
	@include/scripts/sysdeps.sh $(SYSDEPS_EXTRA)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt -c constraints.txt
	@touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(PY) -m include.demo

test: $(STAMP) sysdeps
	$(PY) -m pytest tests

test-fast: $(STAMP)
	$(PY) -m pytest tests/dags tests/unit

up: $(STAMP)
	$(PY) -m include.stack.airflow up

down:
	@test -x $(PY) && $(PY) -m include.stack.airflow down || true

stack-up: $(STAMP)
	$(PY) -m include.stack up

stack-down:
	$(PY) -m include.stack down

stack-status:
	$(PY) -m include.stack status

bench: $(STAMP)
	$(PY) -m bench $(B)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean: down
	rm -rf .state
