#!/usr/bin/env bash
# Starts the local Redis (127.0.0.1:6379) if it is down: the weight-budget tests use it as the shared store that a
# cluster would point BINANCE_EXTRACTOR_BUDGET_URL at (each test under its own budget name).
set -euo pipefail
ready() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }
if ready; then exit 0; fi
if ! command -v redis-server >/dev/null; then
  if [[ $(id -u) -ne 0 ]]; then echo "Redis is down and only root can install it" >&2; exit 1; fi
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server
fi
mkdir -p /var/lib/redis /var/log/redis
redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis \
  --logfile /var/log/redis/ci.log
for _ in $(seq 1 40); do ready && break; sleep 0.25; done
ready || { echo "Redis did not start" >&2; exit 1; }
echo "Redis started"
