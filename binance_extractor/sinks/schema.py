"""Logical schema shared by every sink: the tables' specs (data tables from the catalog, the bookkeeping tables
here) and the versioned migrations.

Sinks translate these declarations into their own DDL (MySQL, SQLite, PostgreSQL) or collections and indexes
(Mongo), so a table is described once and every store agrees on names, keys and types.
"""

from __future__ import annotations

from dataclasses import dataclass

from binance_extractor import timeframes
from binance_extractor.catalog import (
    AUDIT_TABLE,
    DATASETS,
    KLINE_COLUMNS,
    LEDGER_TABLE,
    SCHEMA_TABLE,
    ColType,
    Column,
    DataKind,
    TableSpec,
    dataset_of_table,
)
from binance_extractor.catalog import col as _c

__all__ = ["KLINE_COLUMNS", "LATEST_VERSION", "MIGRATIONS", "SCHEMA_TABLE", "ColType", "Column", "TableSpec"]


@dataclass(frozen=True)
class Index:
    table: str
    name: str
    columns: tuple[str, ...]


@dataclass(frozen=True)
class Migration:
    """Creates ``tables`` and ``indexes``, adds ``columns`` to existing tables (each if missing), then sets
    ``fills`` (table, column, value) on the rows where that column is still NULL: every step is idempotent on its
    own. An added column is declared in the table's spec (nullable), so a new table is created with it already."""

    version: int
    name: str
    tables: tuple[str, ...]
    indexes: tuple[Index, ...] = ()
    columns: tuple[tuple[str, str], ...] = ()  # (table, column) of the table's spec
    fills: tuple[tuple[str, str, str], ...] = ()


_BOOKKEEPING: dict[str, TableSpec] = {
    AUDIT_TABLE: TableSpec(
        AUDIT_TABLE,
        (
            _c("run_id", "str", length=36),
            _c("kind", "str", length=16),
            _c("table_name", "str", length=64),
            _c("symbol", "symbol", nullable=True),
            _c("interval_name", "str", nullable=True, length=8),
            _c("range_start", "time", nullable=True),
            _c("range_end", "time", nullable=True),
            _c("requested_by", "str", length=255),
            _c("rows_written", "int"),
            _c("started_at", "time"),
            _c("finished_at", "time", nullable=True),
            _c("duration_ms", "int", nullable=True),
            _c("outcome", "str", length=16),
            _c("error", "text", nullable=True),
        ),
        ("run_id",),
        None,
        "run_id",
    ),
    LEDGER_TABLE: TableSpec(
        LEDGER_TABLE,
        (
            _c("table_name", "str", length=64),
            _c("symbol", "symbol"),
            _c("gap_start", "time"),
            _c("gap_end", "time"),
            _c("confirmed_at", "time"),
            _c("checked_by", "str", length=255),
            _c("method", "str", length=32),
            _c("requests", "int"),
            # the evidence (gaps/evidence.py); rows from before it have status NULL/'legacy' until re-checked
            _c("status", "str", nullable=True, length=16),  # confirmed | pending (not fillable yet) | legacy
            _c("bound", "time", nullable=True),  # the exchange's closed bound when REST was asked
            _c("asked_at", "time", nullable=True),
            _c("source", "str", nullable=True, length=16),  # what was asked: rest
            _c("reason", "text", nullable=True),  # why a pending hole is not confirmed
        ),
        ("table_name", "symbol", "gap_start"),
        None,
        "gap_start",
    ),
}

_FIRST_TABLES = (DataKind.FUNDING, DataKind.AGG_TRADES, DataKind.TRADES)  # migration 1 created them

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "market data tables and the run audit",
        (
            *(DATASETS[DataKind.KLINES].table_name(tf) for tf in timeframes.scheduled()),
            *(DATASETS[k].table for k in _FIRST_TABLES),
            AUDIT_TABLE,
        ),
    ),
    Migration(
        2,
        "gap ledger and run lookup index",
        (LEDGER_TABLE,),
        (Index(AUDIT_TABLE, "ix_runs_table_symbol_started", ("table_name", "symbol", "started_at")),),
    ),
    Migration(
        3,
        "gap ledger evidence; rows confirmed before it are legacy until re-checked",
        (),
        columns=tuple((LEDGER_TABLE, c) for c in ("status", "bound", "asked_at", "source", "reason")),
        fills=((LEDGER_TABLE, "status", "legacy"),),
    ),
)
LATEST_VERSION = MIGRATIONS[-1].version


def spec_for(table: str) -> TableSpec:
    """The spec of ``table``: a bookkeeping table, or a data table of the catalog (a per-timeframe series has
    one for every Binance interval). Unknown names: InputError."""
    if table in _BOOKKEEPING:
        return _BOOKKEEPING[table]
    kind, timeframe = dataset_of_table(table)
    return DATASETS[kind].spec(timeframe)
