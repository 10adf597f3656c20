"""Binance USD-M Futures aggregate trades, hourly Airflow DAG `binance_trades`.

Each run extracts exactly its hour of aggregate trades (`/fapi/v1/aggTrades`, weight 20 per 1000 trades), mapped
per symbol in pool `binance_api`. Runs are not incremental on purpose: catching up days of trades would use the
whole IP weight budget; missed hours are filled with `airflow backfill create --dag-id binance_trades ...`.
Writes `agg_trades` (asset `x-binance://futures-um/agg_trades`).
"""

from binance_extractor.airflow import dagfactory

dag = dagfactory.trades_dag(doc_md=__doc__)
