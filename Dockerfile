# syntax=docker/dockerfile:1
# Image for the extraction pods: `python -m binance_extractor <command> ...` (the same CLI the DAGs' local
# runtime calls in-process). The pod template k8s_pod_templates/extractor-pod.yaml runs it as UID 10001 with
# a read-only root filesystem; only /tmp (an emptyDir) and /airflow/xcom (KubernetesPodOperator's volume)
# are writable.
#
# Build (single arch):   docker build -t binance-extractor:0.1.0 .
# Multi-arch build (linux/amd64 + linux/arm64, needs buildx; QEMU/binfmt or native nodes per platform,
# mysqlclient compiles in the builder stage of each platform):
#   docker buildx create --use --name multiarch   # once
#   docker buildx build --platform linux/amd64,linux/arm64 -t REGISTRY/binance-extractor:0.1.0 --push .
# Smoke test:            docker run --rm binance-extractor:0.1.0 --help

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
COPY requirements.txt /tmp/requirements.txt
RUN pip install -r /tmp/requirements.txt

# ---- runtime: the venv, the MariaDB client library, the library code and its config -------------------
FROM python:3.11-slim AS runtime

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
# The library runs from /app via PYTHONPATH (not pip-installed) so config.py finds /app/include/config.yaml.
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
