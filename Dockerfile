# syntax=docker/dockerfile:1
# Two images from one file, both installed from the one pinned set (requirements.lock, hash-checked) by a pinned
# pip (requirements-build.lock), neither with a compiler in its final stage:
#
#   airflow (the default target, last stage): the Airflow deployment image for the scheduler, api-server,
#       dag-processor, triggerer and workers: apache/airflow:3.3.2-python3.11 plus the library, dags/,
#       plugins/ and include/. Used by the Helm values in deploy/ (images.airflow).
#   extractor: the lean non-root pod image: `python -m binance_extractor <command> ...` (the same CLI the DAGs'
#       local runtime calls in-process). The pod template k8s_pod_templates/extractor-pod.yaml runs it as UID
#       10001 with a read-only root filesystem; only /tmp (an emptyDir) and /airflow/xcom are writable. It holds
#       what a pod runs, not the whole lock: requirements-extractor.lock, a subset of requirements.lock (same pins).
#
# Build (or `make images`, which builds both with podman and tags them binance-airflow:0.1.0 and
# binance-extractor:0.1.0):
#               docker build -t REGISTRY/binance-airflow:0.1.0 .
#               docker build --target extractor -t REGISTRY/binance-extractor:0.1.0 .
# The base images are build arguments (defaults: the real ones), e.g. for a mirror:
#               --build-arg PYTHON_IMAGE=mirror.example/python:3.11-slim \
#               --build-arg AIRFLOW_IMAGE=mirror.example/apache/airflow:3.3.2-python3.11
# Multi-arch (linux/amd64 + linux/arm64, needs buildx; the lock carries hashes for every platform's wheels,
# mysqlclient compiles per platform):
#   docker buildx create --use --name multiarch   # once
#   docker buildx build --platform linux/amd64,linux/arm64 --target extractor \
#     -t REGISTRY/binance-extractor:0.1.0 --push .
# Smoke test:   docker run --rm REGISTRY/binance-extractor:0.1.0 --help
ARG PYTHON_IMAGE=python:3.11-slim
ARG AIRFLOW_IMAGE=apache/airflow:3.3.2-python3.11

# ---- builder: the extractor's venv; mysqlclient compiles here (pkg-config + the MariaDB client headers) -------
FROM ${PYTHON_IMAGE} AS builder

RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential pkg-config libmariadb-dev \
    && rm -rf /var/lib/apt/lists/*

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# The pinned pip first (whatever pip the base image ships only installs it), then the pod's pinned set.
COPY requirements-build.lock /tmp/requirements-build.lock
RUN python -m venv /opt/venv \
    && pip install --require-hashes -r /tmp/requirements-build.lock
COPY requirements-extractor.lock /tmp/requirements.lock
# Then what a pod never uses goes: setuptools and pip themselves (no pod installs anything), the packages' own test
# suites (the rule the official python images apply to the standard library) and the debug symbols of the
# compiled extensions (a fifth of the venv: strip --strip-unneeded keeps what the dynamic linker needs).
# No byte-code yet: the extractor stage compiles what the pods import (scripts/pod-bytecode.py).
RUN pip install --no-compile --require-hashes -r /tmp/requirements.lock \
    && pip uninstall -q -y setuptools \
    && pip check \
    && find /opt/venv/lib -depth -type d \( -name test -o -name tests \) -exec rm -rf {} + \
    && find /opt/venv -type f \( -name '*.so' -o -name '*.so.[0-9]*' \) -exec strip --strip-unneeded {} + \
    && python -m pip uninstall -q -y pip

# ---- extractor: the venv, the MariaDB client library, the library code and its config ----------------
FROM ${PYTHON_IMAGE} AS extractor

LABEL org.opencontainers.image.title="binance-extractor" \
      org.opencontainers.image.description="Binance USD-M Futures market data extractor (CLI for Airflow pods)" \
      org.opencontainers.image.version="0.1.0"

RUN apt-get update \
    && apt-get install -y --no-install-recommends libmariadb3 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 extractor \
    && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home \
       --shell /usr/sbin/nologin extractor

COPY --from=builder /opt/venv /opt/venv

WORKDIR /app
# The library runs from /app via PYTHONPATH. Its default config is the package resource
# binance_extractor/resources/config.yaml, a link to include/config.yaml (copied next to it).
COPY binance_extractor/ /app/binance_extractor/
COPY include/ /app/include/
# Byte-compile now, at runtime the root filesystem is read-only: the library whole, its dependencies as far as the
# pods import them (most of Airflow's server side never runs in a pod; see scripts/pod-bytecode.py).
COPY scripts/pod-bytecode.py /tmp/pod-bytecode.py
RUN /opt/venv/bin/python -m compileall -q /app/binance_extractor \
    && PYTHONPATH=/app HOME=/tmp/warm AIRFLOW_HOME=/tmp/warm/airflow BINANCE_EXTRACTOR_DATA_DIR=/tmp/warm/data \
       /opt/venv/bin/python /tmp/pod-bytecode.py \
    && rm -rf /tmp/warm /tmp/pod-bytecode.py

ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    AIRFLOW_HOME=/tmp/airflow \
    AIRFLOW__CORE__LOAD_EXAMPLES=False \
    BINANCE_EXTRACTOR_DATA_DIR=/tmp/data \
    OTEL_SERVICE_NAME=binance-extractor

USER 10001:10001

ENTRYPOINT ["python", "-m", "binance_extractor"]
CMD ["--help"]

# ---- airflow-builder: what the Airflow image must compile, built with that image's own Python --------------
# mysqlclient is published only as an sdist for Linux: its wheel is built here, from the lock's hash-checked
# sdist, so the final stage needs no compiler. The library's wheel is built here too (pinned setuptools).
FROM ${AIRFLOW_IMAGE} AS airflow-builder

USER root
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential pkg-config libmariadb-dev \
    && rm -rf /var/lib/apt/lists/*
USER airflow

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --chown=airflow:0 requirements-build.lock /tmp/requirements-build.lock
RUN pip install --require-hashes -r /tmp/requirements-build.lock
COPY --chown=airflow:0 requirements.lock /tmp/requirements.lock
RUN awk '/^mysqlclient==/ {p = 1} p {print} p && !/\\$/ {exit}' /tmp/requirements.lock >/tmp/mysqlclient.txt \
    && pip wheel --no-deps --require-hashes -r /tmp/mysqlclient.txt -w /tmp/wheels/deps

# The library as a real package (a wheel: resources/ holds real files, the provider entry point is registered).
COPY --chown=airflow:0 pyproject.toml /tmp/src/pyproject.toml
COPY --chown=airflow:0 binance_extractor/ /tmp/src/binance_extractor/
COPY --chown=airflow:0 include/ /tmp/src/include/
COPY --chown=airflow:0 k8s_pod_templates/ /tmp/src/k8s_pod_templates/
RUN pip wheel --no-deps --no-build-isolation /tmp/src -w /tmp/wheels/library

# ---- airflow (default target): the official Airflow image with the library, DAGs and plugins ----------
FROM ${AIRFLOW_IMAGE} AS airflow

LABEL org.opencontainers.image.title="binance-airflow" \
      org.opencontainers.image.description="Airflow 3.3.2 with the Binance extractor DAGs, plugins and library" \
      org.opencontainers.image.version="0.1.0"

# The MariaDB client library mysqlclient links against (the official image has it; a base without it gets it).
USER root
RUN apt-get update \
    && apt-get install -y --no-install-recommends libmariadb3 \
    && rm -rf /var/lib/apt/lists/*
USER airflow

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --chown=airflow:0 requirements-build.lock /tmp/requirements-build.lock
RUN pip install --require-hashes -r /tmp/requirements-build.lock && rm /tmp/requirements-build.lock
# The same hash-checked set as `make install` (apache-airflow==3.3.2 is in it, so the base image's Airflow is kept,
# never up- or downgraded by a dependency). mysqlclient comes pre-built from airflow-builder; the lock's pin then
# finds it installed.
COPY --chown=airflow:0 requirements.lock /tmp/requirements.lock
COPY --from=airflow-builder --chown=airflow:0 /tmp/wheels/deps/ /tmp/wheels/deps/
RUN pip install --no-deps /tmp/wheels/deps/*.whl \
    && pip install --require-hashes -r /tmp/requirements.lock \
    && rm -rf /tmp/wheels /tmp/requirements.lock

COPY --from=airflow-builder --chown=airflow:0 /tmp/wheels/library/ /tmp/wheels/library/
RUN pip install --no-deps /tmp/wheels/library/*.whl && rm -rf /tmp/wheels

COPY --chown=airflow:0 dags/ /opt/airflow/dags/
COPY --chown=airflow:0 plugins/ /opt/airflow/plugins/
COPY --chown=airflow:0 include/ /opt/airflow/include/

ENV AIRFLOW__CORE__LOAD_EXAMPLES=False \
    AIRFLOW__CORE__TEST_CONNECTION=Enabled \
    BINANCE_EXTRACTOR_CONFIG=/opt/airflow/include/config.yaml
