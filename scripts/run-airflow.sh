#!/usr/bin/env bash
# `make run`: Airflow on this machine with the embedded defaults, DAGs unpaused, Ctrl-C stops everything.
#
# Airflow home:   <repo>/airflow_home (SQLite metadata DB, LocalExecutor, parallelism sized for the CPUs)
# Data store:     embedded SQLite in <repo>/data (BINANCE_EXTRACTOR_SINKS, BINANCE_EXTRACTOR_DATA_DIR override)
# Runtime:        local (in-process tasks; BINANCE_EXTRACTOR_RUNTIME=kubernetes needs a cluster)
# Exchange:       BINANCE_FUTURES_BASE_URL (default https://fapi.binance.com)
# Port:           AIRFLOW_PORT (default 8080); the Execution API URL follows it.
# Set-up:         `python -m binance_extractor setup-airflow`: pool binance_api (BINANCE_API_POOL_SLOTS, default 4,
#                 see docs/USAGE.md), Variable binance_symbols, connection binance_default (Test button enabled).
# Overrides for tests: RUN_AIRFLOW_HOME (instead of <repo>/airflow_home), any AIRFLOW__* variable.
set -euo pipefail
set +m  # no job control: the background job stays in our group, so setsid makes it a group leader in place
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

# shellcheck source=scripts/airflow-env.sh
source "$ROOT/scripts/airflow-env.sh"
# shellcheck source=scripts/stream-sidecar.sh
source "$ROOT/scripts/stream-sidecar.sh"  # BINANCE_STREAM=1: the live tail beside Airflow

mkdir -p "$AIRFLOW_HOME" "$BINANCE_EXTRACTOR_DATA_DIR"
echo "run-airflow: AIRFLOW_HOME=$AIRFLOW_HOME, data in $BINANCE_EXTRACTOR_DATA_DIR ($BINANCE_EXTRACTOR_SINKS)," \
  "exchange $BINANCE_FUTURES_BASE_URL, parallelism $PARALLELISM"

# standalone in its own process group (setsid), so stopping it reaches the scheduler, api-server, dag-processor,
# triggerer and every task process, not just the parent (SIGTERM to the parent alone orphans its children).
setsid airflow standalone &
PGID=$!

stop() {
  trap - INT TERM
  echo
  stream_stop
  echo "run-airflow: stopping Airflow (process group $PGID)"
  local sig
  for sig in INT TERM KILL; do
    kill -s "$sig" -- "-$PGID" 2>/dev/null || break
    for _ in $(seq 1 20); do
      kill -0 -- "-$PGID" 2>/dev/null || break 2
      sleep 0.5
    done
    echo "run-airflow: still running after SIG$sig"
  done
  wait "$PGID" 2>/dev/null || true
  echo "run-airflow: stopped"
  exit 0
}
trap stop INT TERM

URL="http://localhost:$PORT"
for _ in $(seq 1 240); do
  if ! kill -0 "$PGID" 2>/dev/null; then
    echo "run-airflow: airflow standalone exited early" >&2
    wait "$PGID" || true
    exit 1
  fi
  if curl -fsS "$URL/api/v2/monitor/health" >/dev/null 2>&1; then
    break
  fi
  sleep 0.5
done

# standalone migrated the metadata DB; tasks of a pool that does not exist yet just wait for it. The same
# idempotent command as the Helm hook Job: pool binance_api, Variable binance_symbols, connection binance_default.
if ! python -m binance_extractor setup-airflow >"$AIRFLOW_HOME/setup-airflow.log" 2>&1; then
  echo "run-airflow: setup-airflow failed (see $AIRFLOW_HOME/setup-airflow.log)" >&2
fi

stream_start

cat <<EOF

============================================================================
  Airflow UI:      $URL
  User:            admin
  Password in:     $AIRFLOW_HOME/simple_auth_manager_passwords.json.generated
  Data store:      $BINANCE_EXTRACTOR_SINKS (embedded files under $BINANCE_EXTRACTOR_DATA_DIR)
  Ctrl-C stops every process started here.
============================================================================

EOF

# `wait` returns when a trapped signal arrives; loop until standalone itself exits.
while kill -0 "$PGID" 2>/dev/null; do
  wait "$PGID" || true
done
echo "run-airflow: airflow standalone exited" >&2
stream_stop
exit 1
