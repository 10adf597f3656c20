"""Binance USD-M Futures klines on demand: Airflow DAG `binance_klines_manual` (no schedule).

Trigger it from the UI form (or `POST /api/v2/dags/binance_klines_manual/dagRuns` with a `conf`):

- `symbols`: list of symbols, e.g. `["BTCUSDT", "ETHUSDT"]`
- `interval`: any Binance interval (`1m` ... `1M`)
- `start` / `end`: ISO 8601 UTC, half-open `[start, end)` on the candle open time
- `sinks`: empty for the deployment default, or any of `sqlite`, `mysql`, `postgres`, `mongo`, `jsonl`

The form is validated by JSON schema; the first task validates again (REST triggers skip the form) and fails
with a one-line message on bad input. The range is split into weekly chunks, one mapped task per
(symbol, chunk), widened if needed to stay within `core.max_map_length`. Re-running a range is idempotent.
"""

from binance_extractor.airflow import dagfactory

dag = dagfactory.manual_dag(doc_md=__doc__)
