# One-command entry points: install, run (Airflow on the embedded default), test (the whole suite).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
STAMP := $(VENV)/.installed

.PHONY: install run test lint format typecheck bench services clean

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml scripts/install.sh
	bash scripts/install.sh
	touch $(STAMP)

run: install
	bash scripts/run-airflow.sh

services:
	bash scripts/ensure-mariadb.sh
	bash scripts/ensure-postgres.sh

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

typecheck: install
	$(VENV)/bin/mypy

test: install services lint typecheck
	$(PY) -m pytest -n 2 tests

bench: install services
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) .venv-mongo airflow_home data
