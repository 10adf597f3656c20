"""Typed datasets over the catalog: ``Dataset(kind, timeframe)`` is what one table holds.

Why: holes, health checks, readers and stores start from a table; ``Dataset.of_table`` reads a name once (through
``catalog.dataset_of_table``) and the rest of the code passes this value along. ``command_kind`` is the one place
a CLI command (and its DAG family) maps to a data kind (``trades`` = aggregate trades). The facts themselves
(tables, columns, time columns, models, commands) live in ``catalog.DATASETS``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from binance_extractor import catalog, timeframes
from binance_extractor.catalog import DataKind, DatasetEntry, Row, TableSpec
from binance_extractor.errors import InputError
from binance_extractor.timeframes import Timeframe

__all__ = ["COMMAND_KINDS", "SCHEDULED_KINDS", "DataKind", "Dataset", "command_kind"]


@dataclass(frozen=True, order=True)
class Dataset:
    """What one table holds: a data kind, plus its timeframe for a per-timeframe series (None for the others)."""

    kind: DataKind
    timeframe: Timeframe | None = None

    def __post_init__(self) -> None:
        if self.entry.per_timeframe and self.timeframe is None:
            raise InputError(f"{self.kind} need an interval (e.g. 5m or m5)")
        if not self.entry.per_timeframe and self.timeframe is not None:
            object.__setattr__(self, "timeframe", None)  # only per-timeframe series have one

    @property
    def entry(self) -> DatasetEntry:
        return catalog.DATASETS[self.kind]

    @property
    def table(self) -> str:
        return self.entry.table_name(self.timeframe)

    @property
    def time_column(self) -> str:
        return self.entry.time_column

    @property
    def shape(self) -> catalog.Shape:
        return self.entry.shape

    @property
    def grid(self) -> Timeframe | None:
        """The time grid the rows sit on (a hole is counted and split on it): a candle table's timeframe, open
        interest's 5-minute marks; None for funding (1/4/8 h, jittered) and trades (ids)."""
        return self.entry.grid_of(self.timeframe)

    @property
    def model(self) -> type[Row]:
        return self.entry.model

    @property
    def spec(self) -> TableSpec:
        return self.entry.spec(self.timeframe)

    @classmethod
    def klines(cls, timeframe: Timeframe) -> Dataset:
        return cls(DataKind.KLINES, timeframe)

    @classmethod
    def of_table(cls, table: str) -> Dataset:
        """The dataset a market data table holds; bookkeeping tables and unknown names are an InputError."""
        return cls(*catalog.dataset_of_table(table))

    @classmethod
    def parse(cls, name: str | Dataset) -> Dataset:
        """User input (CLI, web page, ``read()``): ``klines_m5``, ``m5`` or ``5m``, or a table of another kind."""
        if isinstance(name, Dataset):
            return name
        value = name.strip()
        try:
            return cls.of_table(value)
        except InputError:
            pass
        try:
            return cls(DataKind.KLINES, timeframes.parse(value))
        except InputError:
            raise InputError(f"unknown table {name!r}: use {catalog.table_names()} (or m5, 1h ...)") from None


def _command_kinds() -> dict[str, DataKind]:
    out: dict[str, DataKind] = {}
    for entry in catalog.DATASETS.values():
        out.setdefault(entry.command, entry.kind)  # the first kind of a command is what it extracts by default
    return out


COMMAND_KINDS = _command_kinds()
# the kinds with a scheduled DAG family: one per command, plus the mark/index/premium klines (`klines --price`)
SCHEDULED_KINDS = (*COMMAND_KINDS.values(), *(k for k in catalog.PRICE_KINDS.values() if k is not DataKind.KLINES))


def command_kind(command: str, options: Mapping[str, str | None] | None = None) -> DataKind:
    """The data kind a CLI command (or DAG family) extracts, read from the catalog: the entry of ``command`` whose
    ``command_args`` the given ``options`` (``{"--kind": "historical"}``, ``{"--price": "mark"}``) match, else the
    command's default (``trades``: aggregate trades; ``klines``: trade klines)."""
    if command not in COMMAND_KINDS:
        raise InputError(f"unknown kind {command!r}: use one of {', '.join(COMMAND_KINDS)}")
    given = {k: v for k, v in (options or {}).items() if v is not None}
    for entry in catalog.DATASETS.values():
        args = dict(zip(entry.command_args[::2], entry.command_args[1::2], strict=True))
        if entry.command == command and args and all(given.get(k) == v for k, v in args.items()):
            return entry.kind
    return COMMAND_KINDS[command]


def has_candles(table: str) -> bool:
    """Whether ``table`` holds a candle series (one table per timeframe): what freshness and the chart read."""
    try:
        return Dataset.of_table(table).timeframe is not None
    except InputError:
        return False
