# syntax=docker/dockerfile:1
# Two images from one file, both installed from the one pinned set (requirements.lock, hash-checked):
#
#   airflow (the default target, last stage): the Airflow deployment image for the scheduler, api-server,
#       dag-processor, triggerer and workers: apache/airflow:3.3.2-python3.11 plus the library, dags/,
#       plugins/ and include/. Used by the Helm values in deploy/ (images.airflow).
#   extractor: the lean non-root pod image: `python -m binance_extractor <command> ...` (the same CLI the DAGs'
#       local runtime calls in-process). The pod template k8s_pod_templates/extractor-pod.yaml runs it as UID
#       10001 with a read-only root filesystem; only /tmp (an emptyDir) and /airflow/xcom are writable.
#
# Build:        docker build -t REGISTRY/binance-airflow:0.1.0 .
#               docker build --target extractor -t REGISTRY/binance-extractor:0.1.0 .
# Multi-arch (linux/amd64 + linux/arm64, needs buildx; the lock carries hashes for every platform's wheels,
# mysqlclient compiles per platform):
#   docker buildx create --use --name multiarch   # once
#   docker buildx build --platform linux/amd64,linux/arm64 --target extractor \
#     -t REGISTRY/binance-extractor:0.1.0 --push .
# Smoke test:   docker run --rm REGISTRY/binance-extractor:0.1.0 --help

# ---- builder: compiles mysqlclient (needs pkg-config + the MariaDB client headers) into a venv ----------
FROM python:3.11-slim AS builder

RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential pkg-config libmariadb-dev \
    && rm -rf /var/lib/apt/lists/*

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

RUN python -m venv /opt/venv
COPY requirements.lock /tmp/requirements.lock
RUN pip install --require-hashes -r /tmp/requirements.lock

# ---- extractor: the venv, the MariaDB client library, the library code and its config ----------------
FROM python:3.11-slim AS extractor

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
# Byte-compile now: at runtime the root filesystem is read-only.
RUN python -m compileall -q /app/binance_extractor

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

# ---- airflow (default target): the official Airflow image with the library, DAGs and plugins ----------
FROM apache/airflow:3.3.2-python3.11 AS airflow

LABEL org.opencontainers.image.title="binance-airflow" \
      org.opencontainers.image.description="Airflow 3.3.2 with the Binance extractor DAGs, plugins and library" \
      org.opencontainers.image.version="0.1.0"

# mysqlclient compiles from its sdist if the base image's build differs from the lock's pin.
USER root
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential pkg-config libmariadb-dev \
    && rm -rf /var/lib/apt/lists/*
USER airflow

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# The same hash-checked set as `make install` and the extractor image (apache-airflow==3.3.2 is in it, so the
# base image's Airflow is kept, never up- or downgraded by a dependency).
COPY --chown=airflow:0 requirements.lock /tmp/requirements.lock
RUN pip install --require-hashes -r /tmp/requirements.lock

# The library as a real package (a wheel: resources/ holds real files, the provider entry point is registered).
COPY --chown=airflow:0 pyproject.toml /tmp/src/pyproject.toml
COPY --chown=airflow:0 binance_extractor/ /tmp/src/binance_extractor/
COPY --chown=airflow:0 include/ /tmp/src/include/
COPY --chown=airflow:0 k8s_pod_templates/ /tmp/src/k8s_pod_templates/
RUN pip install --no-deps /tmp/src && rm -rf /tmp/src /tmp/requirements.lock

COPY --chown=airflow:0 dags/ /opt/airflow/dags/
COPY --chown=airflow:0 plugins/ /opt/airflow/plugins/
COPY --chown=airflow:0 include/ /opt/airflow/include/

ENV AIRFLOW__CORE__LOAD_EXAMPLES=False \
    AIRFLOW__CORE__TEST_CONNECTION=Enabled \
    BINANCE_EXTRACTOR_CONFIG=/opt/airflow/include/config.yaml
