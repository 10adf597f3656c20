"""Holes in stored market data: detection in the database, weekly chunks, repair, closure check and ledger.

Why it exists: failed runs, our own outages and late listings leave holes that incremental runs never revisit,
while the exchange's own outages leave holes nobody can fill. The gap filler finds both, repairs the first kind
and remembers the second (``gap_ledger``) so they are not fetched again every night.

Detection never loads a table into Python: consecutive keys are compared inside the database with
``LAG(...) OVER (PARTITION BY symbol ORDER BY key)`` (MySQL/MariaDB, SQLite 3.25+) or ``$setWindowFields`` with
``$shift`` (MongoDB); only the pairs around a hole come back.

- klines (``klines_<tf>``): a hole is a run of missing candle open times between the first stored candle (or
  ``--start`` / the listing date with ``full_history``) and the last closed candle.
- funding (``funding_rates``): intervals are 1h, 4h or 8h per contract and time, so a hole is a distance between
  consecutive funding times larger than the interval in force around it plus a tolerance (``FundingPair``).
- aggregate trades (``agg_trades``): ids are consecutive, so a hole is ``LAG(agg_trade_id) + 1 != agg_trade_id``;
  it is repaired by refetching the time range between its two neighbours.

All ranges are half-open ``[start, end)`` in epoch milliseconds on the key time.

The package, one layer per module: ``settings`` (constants, ``GapSettings``, which tables), ``models`` (``Hole``,
``Chunk``, ``Scan``, ``ChunkResult``), ``chunking`` (weekly chunks, task groups, ledger arithmetic), ``detection``
(``scan``; the queries themselves are each store's ``gap_queries()`` dialect in ``sinks/``), ``evidence`` (the one
rule that decides what the ledger may record exchange-side, and "not fillable yet"), ``repair`` (``fill_chunk``),
``recheck`` (ledger rows from before the rule, asked again), ``report`` (closure check, report, metrics) and
``filler`` (one gap-filler run's detection and report, for the DAG and the CLI alike); a fill
task's argv and label are the DAG's (``airflow/gap_tasks.py``). What is closed is
``exchange_clock.closed_before`` (re-exported).
The public names are re-exported here: ``from binance_extractor import gaps; gaps.scan(...)``.
"""

from __future__ import annotations

from binance_extractor.errors import InputError
from binance_extractor.exchange_clock import closed_before
from binance_extractor.gaps.chunking import chunk_holes, group_chunks, merge, minus_known, plan_groups
from binance_extractor.gaps.detection import (
    closed_end,
    db_sinks,
    detect_range,
    funding_intervals,
    funding_ms_of,
    holes_of,
    onboard_starts,
    redetect,
    scan,
)
from binance_extractor.gaps.evidence import NOT_FILLABLE_YET, pending_of, pending_records, prune_pending
from binance_extractor.gaps.filler import find_holes, report_run
from binance_extractor.gaps.models import Chunk, ChunkResult, Hole, Scan
from binance_extractor.gaps.recheck import recheck
from binance_extractor.gaps.repair import fill_chunk, fill_chunks
from binance_extractor.gaps.report import (
    build_report,
    closure_message,
    emit_metrics,
    failures,
    raise_if_open,
    report_lines,
    verify,
)
from binance_extractor.gaps.settings import (
    DAY_MS,
    FUNDING_DEFAULT_MS,
    GAP_TABLES,
    HOUR_MS,
    MAX_MAP_LENGTH,
    MONDAY_MS,
    STATES,
    GapClosureError,
    GapSettings,
    default_datasets,
    gap_dataset,
    parse_tables,
)
from binance_extractor.sinks.gap_dialect import FUNDING_NEIGHBOURS, FundingPair

__all__ = [
    "DAY_MS",
    "FUNDING_DEFAULT_MS",
    "FUNDING_NEIGHBOURS",
    "GAP_TABLES",
    "HOUR_MS",
    "MAX_MAP_LENGTH",
    "MONDAY_MS",
    "NOT_FILLABLE_YET",
    "STATES",
    "Chunk",
    "ChunkResult",
    "FundingPair",
    "GapClosureError",
    "GapSettings",
    "Hole",
    "InputError",
    "Scan",
    "build_report",
    "chunk_holes",
    "closed_before",
    "closed_end",
    "closure_message",
    "db_sinks",
    "default_datasets",
    "detect_range",
    "emit_metrics",
    "failures",
    "fill_chunk",
    "fill_chunks",
    "find_holes",
    "funding_intervals",
    "funding_ms_of",
    "gap_dataset",
    "group_chunks",
    "holes_of",
    "merge",
    "minus_known",
    "onboard_starts",
    "parse_tables",
    "pending_of",
    "pending_records",
    "plan_groups",
    "prune_pending",
    "raise_if_open",
    "recheck",
    "redetect",
    "report_lines",
    "report_run",
    "scan",
    "verify",
]
