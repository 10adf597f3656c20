#!/usr/bin/env bash
# Stand-in for the official Airflow image's /entrypoint, reduced to how it dispatches its arguments: none opens a
# shell, `bash ...` and `python ...` run as given, `airflow ...` runs airflow, anything else is an airflow
# sub-command (`docker run IMAGE version` is `airflow version`). The real one also waits for the metadata DB
# and can create a user on request; the Helm chart's containers never rely on that here.
set -euo pipefail
if [[ $# -eq 0 ]]; then
  exec bash
fi
case "$1" in
  bash | python | airflow) exec "$@" ;;
  *) exec airflow "$@" ;;
esac
