"""Binance USD-M Futures funding rates, hourly Airflow DAG `binance_funding_rates`.

Funding settles every 1 h, 4 h or 8 h depending on the contract, so the DAG runs hourly and extracts
incrementally from the last stored funding time up to the interval's end (backfill runs: exactly the interval).
Mapped per symbol (pool `binance_api`); the summary fails if a symbol's newest funding time is older than
8 h plus `freshness_grace_minutes`. Writes `funding_rates` (asset `x-binance://futures-um/funding_rates`).
"""

from binance_extractor.airflow import dagfactory

dag = dagfactory.funding_dag(doc_md=__doc__)
