"""The catalog: every dataset's facts and every store's facts, each declared once.

Why: table names, key columns, time columns, models, CLI commands, archive folders, REST endpoints and their
weights used to be written in several modules that had to agree (and the copies drifted). Everything else
derives from the two tables here, ``DATASETS`` and ``STORES``:

- a **dataset** (``DatasetEntry``) is one kind of market data: its table (one table, or one per timeframe:
  ``klines_<tf>``), columns, key, key-time column, model, the CLI command (and DAG family) that extracts it,
  its data.binance.vision folder, its REST endpoint and that endpoint's request weight;
- a **store** (``StoreEntry``) is where rows go: its ``--sink`` name, URL scheme, whether it reads back (a
  ``Store``) or only writes (JSON lines), the class that opens it (imported when opened) and its default
  connection id.

Adding a dataset is a ``DataKind`` member plus its ``DatasetEntry`` here (and the client's call and a model);
table names are read back from text in one place, ``dataset_of_table``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from functools import lru_cache
from typing import Any, Literal

from binance_extractor import timeframes
from binance_extractor.derivative_models import (
    IndexKline,
    LongShortRatio,
    MarkKline,
    OpenInterest,
    PremiumKline,
    PriceKline,
)
from binance_extractor.errors import InputError
from binance_extractor.models import AggTrade, FundingRate, Kline, Trade
from binance_extractor.prices import Price
from binance_extractor.timeframes import Timeframe

ColType = Literal["symbol", "time", "dec", "int", "bool", "str", "text"]
Row = Kline | FundingRate | AggTrade | Trade | PriceKline | OpenInterest | LongShortRatio
Weight = Callable[[Mapping[str, Any]], int]


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


def col(name: str, type_: ColType, nullable: bool = False, length: int = 0) -> Column:
    return Column(name, type_, nullable, length)


# ------------------------------------------------------------------------------------------------ datasets


class DataKind(StrEnum):
    """A kind of market data (compares equal to its name: ``DataKind.FUNDING == "funding"``); its facts are its
    ``DATASETS`` entry."""

    KLINES = "klines"
    FUNDING = "funding"
    AGG_TRADES = "agg_trades"
    TRADES = "trades"
    MARK_KLINES = "mark_klines"
    INDEX_KLINES = "index_klines"
    PREMIUM_KLINES = "premium_klines"
    OPEN_INTEREST = "open_interest"
    LONG_SHORT_RATIO = "long_short_ratio"

    @classmethod
    def parse(cls, name: str) -> DataKind:
        """A data kind named by text (``klines``, ``funding`` ...)."""
        try:
            return cls(name)
        except ValueError:
            raise InputError(f"unknown data kind {name!r}: use {', '.join(cls)}") from None

    @classmethod
    def of_table(cls, table: str) -> DataKind:
        """The kind a data table holds (``klines_<tf>`` -> klines); bookkeeping tables are an InputError."""
        return dataset_of_table(table)[0]

    @property
    def entry(self) -> DatasetEntry:
        return DATASETS[self]

    def table(self, timeframe: Timeframe | None = None) -> str:
        return self.entry.table_name(timeframe)

    @property
    def time_column(self) -> str:
        return self.entry.time_column

    @property
    def command(self) -> str:
        return self.entry.command

    @property
    def model(self) -> type[Row]:
        return self.entry.model


class Shape(StrEnum):
    """How a dataset's rows follow each other: what makes a hole, where an incremental run resumes, what a ledger
    row proves. Code that differs by dataset asks the shape (and the entry's other facts), never the kind."""

    GRID = "grid"  # one row per step of a fixed grid: candles of a timeframe, open interest every 5 minutes
    EVENTS = "events"  # events at an interval the contract may change (funding 1/4/8 h, ms jitter)
    IDS = "ids"  # consecutive ids (aggregate trades): a hole is a run of missing ids, found between stored rows
    LOG = "log"  # a log read on request by id (historical trades): no gap detection


@dataclass(frozen=True)
class DatasetEntry:
    """One kind of market data, everything the library knows about it.

    ``table`` is the table's name, or for a series kept per timeframe (``per_timeframe``) its prefix: the table
    of timeframe ``m5`` is ``<table>_m5``. ``order_column`` is the key's second part (rows are ordered by it
    within a symbol); ``time_column`` the row's key time (ranges, ``last_time``, retention). ``archive_path`` is
    the data.binance.vision folder (None: not read from the archive). ``weight`` gives the endpoint's request
    weight from the request's parameters.

    The rules that differ by dataset are facts here too: ``shape`` (see ``Shape``); ``grid``, the fixed grid of a
    series not kept per timeframe (open interest: 5 minutes); ``period``, how often a new row is due when there is
    no grid (freshness: funding's longest interval, trades hourly); ``incremental``, whether a scheduled run
    resumes from the newest stored row (aggregate trades: no, each run covers exactly its interval);
    ``gap_filled``, whether the gap filler keeps it; ``rest_days``, how far back REST serves it (None: all).
    ``command_args`` are the options that select it under its CLI command (``trades --kind agg``, ``klines --price
    mark``); none for the command's default dataset.
    """

    kind: DataKind
    table: str
    per_timeframe: bool
    columns: tuple[Column, ...]
    order_column: str
    time_column: str
    model: type[Row]
    command: str
    endpoint: str
    weight: Weight
    shape: Shape
    archive_path: str | None = None
    grid: Timeframe | None = None
    period: timedelta | None = None
    incremental: bool = True
    gap_filled: bool = True
    rest_days: int | None = None
    command_args: tuple[str, ...] = ()

    def grid_of(self, timeframe: Timeframe | None) -> Timeframe | None:
        """The grid rows sit on: the table's timeframe, or the series' fixed grid; None for events and ids."""
        return timeframe if self.per_timeframe else self.grid

    def due_every(self, timeframe: Timeframe | None) -> timedelta:
        """How often a new row is due (freshness): a grid step, or the entry's ``period``."""
        grid = self.grid_of(timeframe)
        if grid is not None:
            return grid.delta
        assert self.period is not None, f"{self.kind}: a dataset without a grid declares its period"
        return self.period

    @property
    def key(self) -> tuple[str, ...]:
        return ("symbol", self.order_column)

    def table_name(self, timeframe: Timeframe | None = None) -> str:
        """The table holding this kind (of ``timeframe``, for a per-timeframe series)."""
        if not self.per_timeframe:
            return self.table
        if timeframe is None:
            raise InputError(f"{self.kind} need an interval (e.g. 5m or m5)")
        return f"{self.table}_{timeframe.name}"

    def spec(self, timeframe: Timeframe | None = None) -> TableSpec:
        return TableSpec(self.table_name(timeframe), self.columns, self.key, self.time_column, self.order_column)

    @property
    def pattern(self) -> str:
        """How the table name is written for users: ``klines_<tf>`` or ``funding_rates``."""
        return f"{self.table}_<tf>" if self.per_timeframe else self.table


def klines_weight(limit: int) -> int:
    """GET /fapi/v1/klines weight by limit: 1 / 2 / 5 / 10."""
    if limit < 100:
        return 1
    if limit < 500:
        return 2
    if limit <= 1000:
        return 5
    return 10


def param_limit(params: Mapping[str, Any], default: int) -> int:
    try:
        return int(params.get("limit") or default)
    except (TypeError, ValueError):
        return default


KLINE_COLUMNS = (
    col("symbol", "symbol"),
    col("open_time", "time"),
    col("close_time", "time"),
    col("open", "dec"),
    col("high", "dec"),
    col("low", "dec"),
    col("close", "dec"),
    col("volume", "dec"),
    col("quote_volume", "dec"),
    col("trade_count", "int"),
    col("taker_buy_base_volume", "dec"),
    col("taker_buy_quote_volume", "dec"),
)

DATASETS: dict[DataKind, DatasetEntry] = {
    DataKind.KLINES: DatasetEntry(
        DataKind.KLINES,
        table="klines",
        per_timeframe=True,
        columns=KLINE_COLUMNS,
        order_column="open_time",
        time_column="open_time",
        model=Kline,
        command="klines",
        endpoint="/fapi/v1/klines",
        weight=lambda p: klines_weight(param_limit(p, 500)),
        shape=Shape.GRID,
        archive_path="klines",
    ),
    DataKind.FUNDING: DatasetEntry(
        DataKind.FUNDING,
        table="funding_rates",
        per_timeframe=False,
        columns=(
            col("symbol", "symbol"),
            col("funding_time", "time"),
            col("funding_rate", "dec"),
            col("mark_price", "dec", nullable=True),
            col("next_funding_time", "time", nullable=True),
        ),
        order_column="funding_time",
        time_column="funding_time",
        model=FundingRate,
        command="funding",
        endpoint="/fapi/v1/fundingRate",
        weight=lambda p: 1,
        shape=Shape.EVENTS,
        period=timedelta(hours=8),  # the longest funding interval
    ),
    DataKind.AGG_TRADES: DatasetEntry(
        DataKind.AGG_TRADES,
        table="agg_trades",
        per_timeframe=False,
        columns=(
            col("symbol", "symbol"),
            col("agg_trade_id", "int"),
            col("price", "dec"),
            col("quantity", "dec"),
            col("first_trade_id", "int"),
            col("last_trade_id", "int"),
            col("time", "time"),
            col("is_buyer_maker", "bool"),
        ),
        order_column="agg_trade_id",
        time_column="time",
        model=AggTrade,
        command="trades",  # the CLI command and DAG family `trades` store aggregate trades
        endpoint="/fapi/v1/aggTrades",
        weight=lambda p: 20,
        shape=Shape.IDS,
        period=timedelta(hours=1),  # the trades DAG's interval
        incremental=False,  # each scheduled run covers exactly its data interval
        command_args=("--kind", "agg"),
    ),
    DataKind.TRADES: DatasetEntry(
        DataKind.TRADES,
        table="trades",
        per_timeframe=False,
        columns=(
            col("symbol", "symbol"),
            col("trade_id", "int"),
            col("price", "dec"),
            col("quantity", "dec"),
            col("quote_quantity", "dec"),
            col("time", "time"),
            col("is_buyer_maker", "bool"),
            col("commission", "dec", nullable=True),
            col("commission_asset", "str", nullable=True, length=16),
        ),
        order_column="trade_id",
        time_column="time",
        model=Trade,
        command="trades",  # `trades --kind historical`
        endpoint="/fapi/v1/historicalTrades",
        weight=lambda p: 20,
        shape=Shape.LOG,
        period=timedelta(hours=1),
        gap_filled=False,
        command_args=("--kind", "historical"),
    ),
}

PRICE_KLINE_COLUMNS = (
    col("symbol", "symbol"),
    col("open_time", "time"),
    col("close_time", "time"),
    col("open", "dec"),
    col("high", "dec"),
    col("low", "dec"),
    col("close", "dec"),
    col("sample_count", "int"),
)

# Issue #23: mark/index/premium-index klines (one table per timeframe, like klines; `klines --price`) and open
# interest (5-minute marks). Facts and sources: docs/DATASETS.md.
PRICE_KINDS: dict[Price, DataKind] = {
    Price.TRADE: DataKind.KLINES,
    Price.MARK: DataKind.MARK_KLINES,
    Price.INDEX: DataKind.INDEX_KLINES,
    Price.PREMIUM: DataKind.PREMIUM_KLINES,
}
for _price, _model in ((Price.MARK, MarkKline), (Price.INDEX, IndexKline), (Price.PREMIUM, PremiumKline)):
    DATASETS[PRICE_KINDS[_price]] = DatasetEntry(
        PRICE_KINDS[_price],
        table=_price.table_prefix,
        per_timeframe=True,
        columns=PRICE_KLINE_COLUMNS,
        order_column="open_time",
        time_column="open_time",
        model=_model,
        command="klines",  # `klines --price mark|index|premium`
        endpoint=_price.endpoint,
        weight=lambda p: klines_weight(param_limit(p, 500)),
        shape=Shape.GRID,
        archive_path=_price.archive_dir,
        command_args=("--price", _price.value),
    )
DATASETS[DataKind.OPEN_INTEREST] = DatasetEntry(
    DataKind.OPEN_INTEREST,
    table="open_interest",
    per_timeframe=False,
    columns=(
        col("symbol", "symbol"),
        col("time", "time"),
        col("open_interest", "dec"),
        col("open_interest_value", "dec"),
    ),
    order_column="time",
    time_column="time",
    model=OpenInterest,
    command="open-interest",
    endpoint="/futures/data/openInterestHist",
    weight=lambda p: 0,  # its own 1000 requests / 5 min / IP instead (weights.OPEN_INTEREST_WINDOW)
    shape=Shape.GRID,
    archive_path="metrics",
    grid=Timeframe("m5", "5m"),  # sampled every 5 minutes
    rest_days=30,  # REST serves only the latest 30 days; older from the archive's metrics files
)
DATASETS[DataKind.LONG_SHORT_RATIO] = DatasetEntry(  # issue #26's proof: a dataset that is an entry
    DataKind.LONG_SHORT_RATIO,
    table="long_short_ratio",
    per_timeframe=False,
    columns=(col("symbol", "symbol"), col("time", "time"), col("long_short_ratio", "dec")),
    order_column="time",
    time_column="time",
    model=LongShortRatio,
    command="long-short-ratio",
    endpoint="/futures/data/globalLongShortAccountRatio",
    weight=lambda p: 0,  # the /futures/data statistics' own request window (weights.OPEN_INTEREST_WINDOW)
    shape=Shape.GRID,
    archive_path="metrics",  # the same daily metrics files as open interest
    grid=Timeframe("m5", "5m"),
    rest_days=30,
)
DERIVATIVE_KINDS = (
    DataKind.MARK_KLINES,
    DataKind.INDEX_KLINES,
    DataKind.PREMIUM_KLINES,
    DataKind.OPEN_INTEREST,
    DataKind.LONG_SHORT_RATIO,
)


def price_of(kind: DataKind) -> Price:
    """The price a candle kind follows (klines: trade)."""
    for price, k in PRICE_KINDS.items():
        if k is kind:
            return price
    raise InputError(f"{kind} is not a kline series")


# The bookkeeping tables (their columns: sinks/schema.py).
AUDIT_TABLE = "extraction_runs"
LEDGER_TABLE = "gap_ledger"
SCHEMA_TABLE = "schema_migrations"


def table_names() -> str:
    """The data tables, as a user writes them: ``klines_<tf>, funding_rates, agg_trades or trades``."""
    names = [e.pattern for e in DATASETS.values()]
    return ", ".join(names[:-1]) + " or " + names[-1]


@lru_cache(maxsize=512)
def dataset_of_table(table: str) -> tuple[DataKind, Timeframe | None]:
    """The one place a table name is read: (kind, timeframe) of a market data table; anything else (bookkeeping
    tables, unknown names, ``klines_x9``) is an InputError."""
    if table in (AUDIT_TABLE, LEDGER_TABLE, SCHEMA_TABLE):
        raise InputError(f"{table} is not a market data table")
    for entry in DATASETS.values():
        if not entry.per_timeframe:
            if table == entry.table:
                return entry.kind, None
            continue
        prefix = entry.table + "_"
        if table.startswith(prefix):
            try:
                tf = timeframes.parse(table[len(prefix) :])
            except InputError:
                break
            if entry.table_name(tf) == table:
                return entry.kind, tf
            break
    raise InputError(f"unknown table {table!r}: use {table_names()}")


# ------------------------------------------------------------------------------------------------ stores


@dataclass(frozen=True)
class StoreEntry:
    """One place rows go: ``name`` (``--sink``, ``BINANCE_EXTRACTOR_SINKS``), the URL ``scheme`` its
    connection is written in, whether it ``reads_back`` (a ``Store``: reads, audit, gap ledger, retention) or only
    writes, the class that opens it (``module:Class``, imported on open) and its default connection id (for
    ``jsonl``: the output path, ``-`` = stdout)."""

    name: str
    title: str  # what docs and help texts call it
    scheme: str
    reads_back: bool
    opener: str
    default_conn_id: str


_SINKS = "binance_extractor.sinks"
STORES: dict[str, StoreEntry] = {
    e.name: e
    for e in (
        StoreEntry("sqlite", "SQLite", "sqlite", True, f"{_SINKS}.sqlite:SqliteStore", "sqlite_default"),
        StoreEntry("mysql", "MySQL/MariaDB", "mysql", True, f"{_SINKS}.mysql:MySqlStore", "mysql_default"),
        StoreEntry(
            "postgres", "PostgreSQL", "postgresql", True, f"{_SINKS}.postgres:PostgresStore", "postgres_default"
        ),
        StoreEntry("mongo", "MongoDB", "mongodb", True, f"{_SINKS}.mongo:MongoStore", "mongo_default"),
        StoreEntry("jsonl", "JSON lines", "file", False, f"{_SINKS}.jsonl:JsonlSink", "-"),
    )
}
SINK_NAMES = tuple(STORES)  # every --sink name
STORE_NAMES = tuple(n for n, e in STORES.items() if e.reads_back)  # the ones that read back
DEFAULT_STORE = "sqlite"


def store(name: str) -> StoreEntry:
    """The store called ``name``; an unknown name is an InputError naming the valid ones."""
    try:
        return STORES[name]
    except KeyError:
        raise InputError(f"unknown sink {name!r}: use one of {', '.join(SINK_NAMES)}") from None


def sink_list(names: tuple[str, ...] = SINK_NAMES, last: str = ", ") -> str:
    """``sqlite, mysql, postgres, mongo, jsonl`` for help texts and errors (``last=" or "``: ``... or mongo``)."""
    return ", ".join(names[:-1]) + last + names[-1] if len(names) > 1 else "".join(names)


def store_titles() -> str:
    """``SQLite, MySQL/MariaDB, PostgreSQL, MongoDB or JSON lines``: what the CLI's description names."""
    titles = [e.title for e in STORES.values()]
    return ", ".join(titles[:-1]) + " or " + titles[-1]
