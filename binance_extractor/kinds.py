"""One vocabulary for the kinds of market data: each kind's table, key-time column and model, in one place.

Why: kind -> table used to be written three times, and the copies disagreed on ``trades`` (the CLI command and
the DAG family ``trades`` store aggregate trades; the data kind ``trades`` is individual trades). ``DataKind``
is the data kind; ``command_kind`` is the one place a CLI command (and its DAG family) maps to one.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import TYPE_CHECKING

from binance_extractor import timeframes
from binance_extractor.errors import InputError
from binance_extractor.timeframes import Timeframe

if TYPE_CHECKING:
    from binance_extractor.models import AggTrade, FundingRate, Kline, Trade

KIND_NAMES = "klines, funding, agg_trades or trades"


class DataKind(StrEnum):
    """A kind of market data (compares equal to its name: ``DataKind.FUNDING == "funding"``)."""

    KLINES = "klines"
    FUNDING = "funding"
    AGG_TRADES = "agg_trades"
    TRADES = "trades"

    @classmethod
    def parse(cls, name: str) -> DataKind:
        try:
            return cls(name)
        except ValueError:
            raise InputError(f"unknown data kind {name!r}: use {KIND_NAMES}") from None

    @classmethod
    def of_table(cls, table: str) -> DataKind:
        """The kind a data table holds (``klines_<tf>`` -> klines); bookkeeping tables are an InputError."""
        return Dataset.of_table(table).kind

    def table(self, timeframe: Timeframe | None = None) -> str:
        """``klines`` + timeframe -> ``klines_<tf>``; the others have one table each."""
        if self is DataKind.KLINES:
            if timeframe is None:
                raise InputError("klines need an interval (e.g. 5m or m5)")
            return timeframe.table
        return _TABLES[self]

    @property
    def time_column(self) -> str:
        """The row's key time: what ranges, ``last_time`` and retention read."""
        return {"klines": "open_time", "funding": "funding_time"}.get(self.value, "time")

    @property
    def command(self) -> str:
        """The CLI command (and DAG family) that extracts this kind: both trade kinds are ``trades``."""
        return "trades" if self in (DataKind.AGG_TRADES, DataKind.TRADES) else self.value

    @property
    def model(self) -> type[Kline | FundingRate | AggTrade | Trade]:
        from binance_extractor.models import AggTrade, FundingRate, Kline, Trade

        models: dict[str, type[Kline | FundingRate | AggTrade | Trade]] = {
            "klines": Kline,
            "funding": FundingRate,
            "agg_trades": AggTrade,
            "trades": Trade,
        }
        return models[self.value]


_TABLES = {DataKind.FUNDING: "funding_rates", DataKind.AGG_TRADES: "agg_trades", DataKind.TRADES: "trades"}


@dataclass(frozen=True, order=True)
class Dataset:
    """What one table holds: a data kind, plus its timeframe for klines (None for the others).

    Why: holes, health checks and readers start from a table name; ``of_table`` reads it once and the rest of
    the code passes this value along (its ``timeframe`` for candle arithmetic) instead of re-parsing names.
    """

    kind: DataKind
    timeframe: Timeframe | None = None

    def __post_init__(self) -> None:
        if self.kind is DataKind.KLINES and self.timeframe is None:
            raise InputError("klines need an interval (e.g. 5m or m5)")
        if self.kind is not DataKind.KLINES and self.timeframe is not None:
            object.__setattr__(self, "timeframe", None)  # only klines have one

    @property
    def table(self) -> str:
        return self.kind.table(self.timeframe)

    @property
    def time_column(self) -> str:
        return self.kind.time_column

    @classmethod
    def of_table(cls, table: str) -> Dataset:
        """The dataset a market data table holds; bookkeeping tables and unknown names are an InputError."""
        return _dataset_of_table(table)

    @classmethod
    def parse(cls, name: str | Dataset) -> Dataset:
        """User input (CLI, web page, ``read()``): ``klines_m5``, ``m5`` or ``5m``, or a table of another kind."""
        if isinstance(name, Dataset):
            return name
        value = name.strip()
        for kind, table in _TABLES.items():
            if value == table:
                return cls(kind)
        try:
            return cls(DataKind.KLINES, timeframes.parse(value))
        except InputError:
            tables = ", ".join(_TABLES.values())
            raise InputError(f"unknown table {name!r}: use klines_<tf> (or m5, 1h ...), {tables}") from None


@lru_cache(maxsize=256)
def _dataset_of_table(table: str) -> Dataset:
    from binance_extractor.sinks.schema import spec_for

    spec_for(table)  # validates the name
    if table.startswith("klines_"):
        return Dataset(DataKind.KLINES, timeframes.parse(table))
    for kind, name in _TABLES.items():
        if name == table:
            return Dataset(kind)
    raise InputError(f"{table} is not a market data table")


COMMAND_KINDS = {"klines": DataKind.KLINES, "funding": DataKind.FUNDING, "trades": DataKind.AGG_TRADES}
SCHEDULED_KINDS = tuple(COMMAND_KINDS.values())  # the kinds with a scheduled DAG family


def command_kind(command: str, trades_kind: str = "agg") -> DataKind:
    """The data kind a CLI command (or DAG family) extracts: ``trades`` means aggregate trades unless
    ``--kind historical``."""
    if command == "trades" and trades_kind == "historical":
        return DataKind.TRADES
    if command not in COMMAND_KINDS:
        raise InputError(f"unknown kind {command!r}: use one of {', '.join(COMMAND_KINDS)}")
    return COMMAND_KINDS[command]
