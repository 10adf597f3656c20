"""Daily gap filler for Binance USD-M data: Airflow DAG `binance_klines_gap_filler` (02:00 UTC).

Holes come from failed runs, our own outages, late listings and the exchange's own outages. Every day, over
every kline table (`klines_m5` ... `klines_d1`), `funding_rates` and `agg_trades`, for the configured symbols
(Variable `binance_symbols` > `BINANCE_SYMBOLS` > `include/config.yaml`), through the configured sinks:

1. **detect**: holes per (table, symbol) between the first stored row (or the listing date with `full_history`)
   and the last closed interval, found in the database (`LAG(...) OVER (PARTITION BY symbol ...)` in MySQL,
   PostgreSQL and SQLite, `$setWindowFields` + `$shift` in MongoDB). Holes already confirmed as exchange-side
   (`gap_ledger`) are left out; `gap_filler.min_gap_candles` / `max_gap_candles` filter by size. Funding holes
   follow each contract's own interval (1h, 4h or 8h); aggregate-trade holes are breaks in `agg_trade_id`.
2. **chunk**: holes split into weekly chunks (`chunk_days`), grouped so that at most `max_mapped_tasks`
   (below Airflow's `max_map_length`) mapped tasks run.
3. **fill**: one mapped task per group (pool `binance_api`), `python -m binance_extractor fill-gaps --chunk ...`
   in a pod (`BINANCE_EXTRACTOR_RUNTIME=kubernetes`) or in-process (`local`): the same argv either way. Each chunk
   is re-detected first (a retry refetches nothing already filled), refetched with the client's retries, and
   re-detected; what the exchange returned nothing for is recorded in the ledger with when, by whom and how many
   requests, so it is never fetched again.
4. **verify**: re-detects every chunk; a hole the exchange may have data for that is still open fails the run,
   naming table, symbol and range.
5. **report**: holes found, filled, confirmed exchange-side and remaining, and completeness per table and
   symbol: in the log, as the XCom `return_value` (`report` on failure) and as metrics (`binance.gaps`,
   `binance.completeness`).

The same logic from a shell: `python -m binance_extractor gaps --table klines_m5` (list) and `fill-gaps` (repair).
"""

from airflow.sdk import DAG

from binance_extractor.airflow import dagfactory


def build_dag(runtime: str | None = None) -> DAG:
    return dagfactory.gap_filler_dag(doc_md=__doc__, runtime=runtime)


dag = build_dag()
