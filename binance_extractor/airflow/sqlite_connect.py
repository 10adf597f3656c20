"""Connection arguments for a SQLite Airflow metadata DB (the local ``make run``).

Every Airflow process (scheduler, api-server, dag-processor, triggerer, tasks, CLI commands) shares one SQLite
file; sqlite's default 5 s lock wait turns bursts of writes into "database is locked" failures on a busy
machine. ``AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS=binance_extractor.airflow.sqlite_connect.CONNECT_ARGS``
(set by ``scripts/airflow-env.sh``) makes them wait for the lock instead.
"""

CONNECT_ARGS: dict[str, object] = {"timeout": 60}
