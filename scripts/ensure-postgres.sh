#!/usr/bin/env bash
# Starts the local PostgreSQL (127.0.0.1:5432, trust auth) if it is down: the PostgreSQL store tests use it (one
# database per test), the e2e tests as Airflow's metadata DB (several Airflow processes write at once, which SQLite
# handles badly).
set -euo pipefail
ready() { pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; }
if ready; then exit 0; fi
if [[ $(id -u) -ne 0 ]]; then echo "PostgreSQL is down and only root can start it" >&2; exit 1; fi
if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql
fi
version=$(ls /etc/postgresql | sort -V | tail -n 1)
pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
for _ in $(seq 1 60); do ready && break; sleep 0.5; done
ready || { echo "PostgreSQL did not start" >&2; exit 1; }
# trust for local TCP connections (the tests connect as postgres without a password)
if ! psql -h 127.0.0.1 -U postgres -c "select 1" >/dev/null 2>&1; then
  echo "PostgreSQL is up but does not trust postgres@127.0.0.1; set 'host all all 127.0.0.1/32 trust'" >&2
  exit 1
fi
echo "PostgreSQL started"
