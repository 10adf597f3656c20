#!/usr/bin/env bash
# The live tail beside the local Airflow: sourced by scripts/run-airflow.sh. Off by default; one flag turns it on:
#   BINANCE_STREAM=1 make run
# It runs `python -m binance_extractor stream` with the same environment as the DAG tasks (sinks, data dir,
# exchange URLs; BINANCE_FUTURES_WS_URL for another WebSocket endpoint) plus BINANCE_STREAM_ARGS, in its own
# process group, logging to $AIRFLOW_HOME/stream.log. stream_stop sends SIGTERM (the tail flushes its queue and
# exits), and SIGKILL only after a 30 s grace period.

STREAM_PID=""

stream_start() {
  [[ "${BINANCE_STREAM:-0}" == "1" ]] || return 0
  local log="$AIRFLOW_HOME/stream.log"
  # shellcheck disable=SC2086  # BINANCE_STREAM_ARGS is a list of CLI words
  setsid python -m binance_extractor stream ${BINANCE_STREAM_ARGS:-} >"$log" 2>&1 &
  STREAM_PID=$!
  echo "run-airflow: live tail started (pid $STREAM_PID, log $log)"
}

stream_stop() {
  [[ -n "$STREAM_PID" ]] || return 0
  if kill -TERM "$STREAM_PID" 2>/dev/null; then
    for _ in $(seq 1 60); do
      kill -0 "$STREAM_PID" 2>/dev/null || break
      sleep 0.5
    done
    kill -KILL "$STREAM_PID" 2>/dev/null || true
  fi
  local rc=0
  wait "$STREAM_PID" 2>/dev/null || rc=$?
  echo "run-airflow: live tail stopped (exit $rc)"
  STREAM_PID=""
}
