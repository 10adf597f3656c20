"""Daily storage maintenance: Airflow DAG `binance_maintenance` (03:00 UTC).

**retention**: deletes rows older than the per-table retention configured in one place, `retention:` in
`include/config.yaml` (e.g. `klines_m5: 90` keeps 90 days of 5-minute candles; absent or null keeps everything,
the default, in which case this task deletes nothing). Deletes run in bounded batches (10,000 rows of one symbol
per statement, through the key index) on every configured sink, so a large purge never holds long locks.
Same command from a shell: `python -m binance_extractor retention`.
"""

from binance_extractor.airflow import dagfactory

dag = dagfactory.maintenance_dag(doc_md=__doc__)
