"""Logical schema shared by every sink: tables, columns, keys, and the versioned migrations.

Sinks translate these declarations into their own DDL (MySQL, SQLite) or collections and indexes (Mongo),
so a table is described once and every store agrees on names, keys and types.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from binance_extractor import timeframes
from binance_extractor.errors import InputError

ColType = Literal["symbol", "time", "dec", "int", "bool", "str", "text"]


@dataclass(frozen=True)
class Column:
    name: str
    type: ColType
    nullable: bool = False
    length: int = 0  # for "str"


@dataclass(frozen=True)
class TableSpec:
    """One table: its columns, its primary/unique key, the key-time column and the key ordering column."""

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    time_column: str | None  # the row's key time (ranges, last_time); None for bookkeeping tables
    order_column: str  # the second key part: rows are ordered by it within a symbol

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def is_data(self) -> bool:
        return self.time_column is not None


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


def _c(name: str, type_: ColType, nullable: bool = False, length: int = 0) -> Column:
    return Column(name, type_, nullable, length)


KLINE_COLUMNS = (
    _c("symbol", "symbol"),
    _c("open_time", "time"),
    _c("close_time", "time"),
    _c("open", "dec"),
    _c("high", "dec"),
    _c("low", "dec"),
    _c("close", "dec"),
    _c("volume", "dec"),
    _c("quote_volume", "dec"),
    _c("trade_count", "int"),
    _c("taker_buy_base_volume", "dec"),
    _c("taker_buy_quote_volume", "dec"),
)

_FIXED: dict[str, TableSpec] = {
    "funding_rates": TableSpec(
        "funding_rates",
        (
            _c("symbol", "symbol"),
            _c("funding_time", "time"),
            _c("funding_rate", "dec"),
            _c("mark_price", "dec", nullable=True),
            _c("next_funding_time", "time", nullable=True),
        ),
        ("symbol", "funding_time"),
        "funding_time",
        "funding_time",
    ),
    "agg_trades": TableSpec(
        "agg_trades",
        (
            _c("symbol", "symbol"),
            _c("agg_trade_id", "int"),
            _c("price", "dec"),
            _c("quantity", "dec"),
            _c("first_trade_id", "int"),
            _c("last_trade_id", "int"),
            _c("time", "time"),
            _c("is_buyer_maker", "bool"),
        ),
        ("symbol", "agg_trade_id"),
        "time",
        "agg_trade_id",
    ),
    "trades": TableSpec(
        "trades",
        (
            _c("symbol", "symbol"),
            _c("trade_id", "int"),
            _c("price", "dec"),
            _c("quantity", "dec"),
            _c("quote_quantity", "dec"),
            _c("time", "time"),
            _c("is_buyer_maker", "bool"),
            _c("commission", "dec", nullable=True),
            _c("commission_asset", "str", nullable=True, length=16),
        ),
        ("symbol", "trade_id"),
        "time",
        "trade_id",
    ),
    "extraction_runs": TableSpec(
        "extraction_runs",
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
    "gap_ledger": TableSpec(
        "gap_ledger",
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

SCHEMA_TABLE = "schema_migrations"
_KLINE_RE = re.compile(r"^klines_[a-z]+[0-9]+$")

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "market data tables and the run audit",
        (*tuple(tf.table for tf in timeframes.scheduled()), "funding_rates", "agg_trades", "trades", "extraction_runs"),
    ),
    Migration(
        2,
        "gap ledger and run lookup index",
        ("gap_ledger",),
        (Index("extraction_runs", "ix_runs_table_symbol_started", ("table_name", "symbol", "started_at")),),
    ),
    Migration(
        3,
        "gap ledger evidence; rows confirmed before it are legacy until re-checked",
        (),
        columns=tuple(("gap_ledger", c) for c in ("status", "bound", "asked_at", "source", "reason")),
        fills=(("gap_ledger", "status", "legacy"),),
    ),
)
LATEST_VERSION = MIGRATIONS[-1].version


def kline_spec(table: str) -> TableSpec:
    return TableSpec(table, KLINE_COLUMNS, ("symbol", "open_time"), "open_time", "open_time")


def spec_for(table: str) -> TableSpec:
    """The spec of ``table``; ``klines_<tf>`` exists for every Binance interval. Unknown names: InputError."""
    if table in _FIXED:
        return _FIXED[table]
    if _KLINE_RE.match(table):
        tf = timeframes.parse(table)
        if tf.table == table:
            return kline_spec(table)
    raise InputError(f"unknown table {table!r}: use klines_<tf>, funding_rates, agg_trades or trades")


def interval_of(table: str) -> str | None:
    """Binance interval of a klines table (``klines_m5`` -> ``5m``), else None."""
    return timeframes.parse(table).interval if table.startswith("klines_") else None
