# One-command entry points: install, run (Airflow on the embedded default), test (the whole suite), images (both
# container images, with podman), wheel (the library as dist/binance_extractor-*.whl), soak (many simulated months).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
STAMP := $(VENV)/.installed

.PHONY: install lock run test lint format typecheck bench services clean images wheel soak

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt requirements.lock pyproject.toml scripts/install.sh
	bash scripts/install.sh
	touch $(STAMP)

# requirements.lock: every runtime package (transitive too) pinned with hashes, for all platforms, resolved from
# requirements.txt. Re-run after editing requirements.txt; versions already in the lock are kept where possible.
# requirements-extractor.lock: the pod image's subset, held to requirements.lock (same versions, same hashes);
# requirements-build.lock: the pip (and setuptools) the image builds install with.
lock:
	@[[ -x $(UV) ]] || { python3 -m venv $(VENV) && $(VENV)/bin/pip install -q uv==0.13.8; }
	$(UV) pip compile requirements.txt --universal --python-version 3.11 --generate-hashes --quiet \
		--custom-compile-command "make lock" -o requirements.lock
	$(UV) pip compile requirements-extractor.txt -c requirements.lock --universal --python-version 3.11 \
		--generate-hashes --quiet --custom-compile-command "make lock" -o requirements-extractor.lock
	$(UV) pip compile requirements-build.txt --universal --python-version 3.11 --generate-hashes --quiet \
		--custom-compile-command "make lock" -o requirements-build.lock

# Both Dockerfile targets (localhost/binance-extractor:VERSION, localhost/binance-airflow:VERSION) with podman; where
# no registry can be reached, stand-in base images are built first (scripts/standin-images.sh). See docs/IMAGES.md.
images: install
	bash scripts/images.sh

# The library as a wheel that declares its dependencies (pyproject.toml): `pip install dist/*.whl` in any venv.
wheel: install
	rm -rf dist
	$(UV) build --wheel --quiet -o dist .

run: install
	bash scripts/run-airflow.sh

services:
	bash scripts/ensure-mariadb.sh
	bash scripts/ensure-postgres.sh
	bash scripts/ensure-redis.sh

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

typecheck: install
	$(VENV)/bin/mypy

test: install services lint typecheck
	$(PY) -m pytest -n 2 --dist loadgroup --durations=25 tests

# The deterministic simulation (docs/SIMULATION.md): SEEDS seeds of 30 simulated days over 2 processes.
SEEDS ?= 200
soak: install
	$(PY) -m tests.simulation soak --seeds $(SEEDS) --jobs 2

bench: install services
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) .venv-mongo airflow_home data dist
