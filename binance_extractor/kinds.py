"""One vocabulary for the kinds of market data: each kind's table, key-time column and model, in one place.

Why: kind -> table used to be written three times, and the copies disagreed on ``trades`` (the CLI command and
the DAG family ``trades`` store aggregate trades; the data kind ``trades`` is individual trades). ``DataKind``
is the data kind; ``command_kind`` is the one place a CLI command (and its DAG family) maps to one.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

from binance_extractor import timeframes
from binance_extractor.errors import InputError

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
        from binance_extractor.sinks.schema import spec_for

        spec_for(table)  # validates the name
        if table.startswith("klines_"):
            return cls.KLINES
        for kind in cls:
            if kind is not cls.KLINES and kind.table() == table:
                return kind
        raise InputError(f"{table} is not a market data table")

    def table(self, interval: str | None = None) -> str:
        """``klines`` + interval -> ``klines_<tf>``; the others have one table each."""
        if self is DataKind.KLINES:
            if not interval:
                raise InputError("klines need an interval (e.g. 5m or m5)")
            return timeframes.parse(interval).table
        return {"funding": "funding_rates", "agg_trades": "agg_trades", "trades": "trades"}[self.value]

    @property
    def time_column(self) -> str:
        """The row's key time: what ranges, ``last_time`` and retention read."""
        return {"klines": "open_time", "funding": "funding_time"}.get(self.value, "time")

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


COMMAND_KINDS = {"klines": DataKind.KLINES, "funding": DataKind.FUNDING, "trades": DataKind.AGG_TRADES}


def command_kind(command: str, trades_kind: str = "agg") -> DataKind:
    """The data kind a CLI command (or DAG family) extracts: ``trades`` means aggregate trades unless
    ``--kind historical``."""
    if command == "trades" and trades_kind == "historical":
        return DataKind.TRADES
    if command not in COMMAND_KINDS:
        raise InputError(f"unknown kind {command!r}: use one of {', '.join(COMMAND_KINDS)}")
    return COMMAND_KINDS[command]
