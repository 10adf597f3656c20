#!/usr/bin/env bash
# Starts the local MariaDB (127.0.0.1:3306, root, empty password, database `test`) if it is down.
set -euo pipefail
ping() { mariadb-admin --protocol=TCP -h 127.0.0.1 -P 3306 -u root ping >/dev/null 2>&1; }
if ping; then exit 0; fi
if [[ $(id -u) -ne 0 ]]; then echo "MariaDB is down and only root can start it" >&2; exit 1; fi
if ! command -v mariadbd >/dev/null && [[ ! -x /usr/sbin/mariadbd ]]; then
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q mariadb-server
fi
install -d -o mysql -g mysql /run/mysqld
start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql
for _ in $(seq 1 60); do ping && break; sleep 0.5; done
ping || { echo "MariaDB did not start" >&2; exit 1; }
mariadb --protocol=TCP -h 127.0.0.1 -u root -e "CREATE DATABASE IF NOT EXISTS test"
echo "MariaDB started"
