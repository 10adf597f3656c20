#!/usr/bin/env bash
# The environment of the local Airflow (`make run`), shared by scripts/run-airflow.sh and scripts/airflow.sh so
# that CLI commands (`scripts/airflow.sh backfill create ...`) talk to the same metadata DB with the same settings.
# Sourced, not run: expects ROOT to be the repository root.

VENV_BIN="$ROOT/.venv/bin"
if [[ ! -x "$VENV_BIN/airflow" ]]; then
  echo "$VENV_BIN/airflow not found; run 'make install' first" >&2
  return 1
fi
export PATH="$VENV_BIN:$PATH"

PORT="${AIRFLOW_PORT:-8080}"
CPUS="$(nproc 2>/dev/null || echo 2)"
PARALLELISM="${AIRFLOW__CORE__PARALLELISM:-$((CPUS * 2))}"

export AIRFLOW_HOME="${RUN_AIRFLOW_HOME:-$ROOT/airflow_home}"
export AIRFLOW__CORE__DAGS_FOLDER="$ROOT/dags"
export AIRFLOW__CORE__PLUGINS_FOLDER="$ROOT/plugins"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__EXECUTOR=LocalExecutor
export AIRFLOW__CORE__PARALLELISM="$PARALLELISM"
export AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG="${AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG:-$PARALLELISM}"
export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="${AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION:-False}"
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="${AIRFLOW__DATABASE__SQL_ALCHEMY_CONN:-sqlite:///$AIRFLOW_HOME/airflow.db}"
if [[ "$AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" == sqlite* ]]; then
  # Scheduler, api-server, dag-processor, triggerer, tasks and CLI commands share one SQLite file: wait for its
  # write lock (60 s) instead of failing with "database is locked" after sqlite's default 5 s.
  export AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS="${AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS:-binance_extractor.airflow.sqlite_connect.CONNECT_ARGS}"
fi
export AIRFLOW__API__PORT="$PORT"
export AIRFLOW__API__BASE_URL="${AIRFLOW__API__BASE_URL:-http://localhost:$PORT}"
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="http://localhost:$PORT/execution/"
# Log servers default to 8793/8794: derive them from the port so two instances (e.g. tests) never collide.
export AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT="${AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT:-$((PORT + 713))}"
export AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT="${AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT:-$((PORT + 714))}"

export BINANCE_EXTRACTOR_RUNTIME="${BINANCE_EXTRACTOR_RUNTIME:-local}"
export BINANCE_EXTRACTOR_SINKS="${BINANCE_EXTRACTOR_SINKS:-sqlite}"
export BINANCE_EXTRACTOR_DATA_DIR="${BINANCE_EXTRACTOR_DATA_DIR:-$ROOT/data}"
export BINANCE_FUTURES_BASE_URL="${BINANCE_FUTURES_BASE_URL:-https://fapi.binance.com}"
# The pool bounds concurrent exchange requesters; the shared IP budget paces their requests (docs/SCALE.md), so
# locally it matches the executor's parallelism and never binds before it does.
export BINANCE_API_POOL_SLOTS="${BINANCE_API_POOL_SLOTS:-$PARALLELISM}"
# The connection form's Test button (the Binance connection pings the exchange and reads exchangeInfo).
export AIRFLOW__CORE__TEST_CONNECTION="${AIRFLOW__CORE__TEST_CONNECTION:-Enabled}"

