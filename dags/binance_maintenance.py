"""Daily storage maintenance: Airflow DAG `binance_maintenance` (03:00 UTC).

**retention**: deletes rows older than the per-table retention configured in one place, `retention:` in
`include/config.yaml` (e.g. `klines_m5: 90` keeps 90 days of 5-minute candles; absent or null keeps everything,
the default, in which case this task deletes nothing). Deletes run in bounded batches (10,000 rows of one symbol
per statement, through the key index) on every configured sink, so a large purge never holds long locks.
Same command from a shell: `python -m binance_extractor retention`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import CronTriggerTimetable, dag, task

from binance_extractor.airflow import callbacks


@dag(
    dag_id="binance_maintenance",
    schedule=CronTriggerTimetable("0 3 * * *", timezone="UTC"),
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["binance", "maintenance"],
    doc_md=__doc__,
    default_args={
        "retries": 2,
        "retry_delay": timedelta(minutes=5),
        "retry_exponential_backoff": True,
        "on_failure_callback": callbacks.on_task_failure,
    },
    on_failure_callback=callbacks.on_dag_failure,
)
def binance_maintenance() -> None:
    @task
    def retention() -> list[dict[str, Any]]:
        from binance_extractor import cli

        return cli.execute(["retention"])

    retention()


dag = binance_maintenance()  # a module-level reference: the DAG must not depend on when gc runs
