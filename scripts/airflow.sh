#!/usr/bin/env bash
# Runs the `airflow` CLI against the local Airflow of `make run` (same home, metadata DB and settings), e.g.
#   scripts/airflow.sh backfill create --dag-id binance_klines_h1 --from-date 2024-02-01T00:00:00+00:00 \
#       --to-date 2024-02-01T03:00:00+00:00
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=scripts/airflow-env.sh
source "$ROOT/scripts/airflow-env.sh"
exec airflow "$@"
