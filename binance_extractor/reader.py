"""Reading stored data back: time-windowed batches from any store, Arrow schemas, and ``read()`` -> DataFrame.

Every store answers ``Store.read(dataset, symbol, start, end)`` through its key index, so reading a bounded time
window at a time keeps memory bounded for any range (the window is sized per table from its row rate) and
works the same on SQLite, MySQL and MongoDB. Decimals stay exact (Arrow ``decimal128(38, 18)``, the MySQL
column type) and times stay aware UTC (Arrow ``timestamp[ms, tz=UTC]``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from binance_extractor import catalog
from binance_extractor.catalog import Shape
from binance_extractor.errors import InputError
from binance_extractor.kinds import Dataset
from binance_extractor.sinks.base import Sink, Store, utc_ms
from binance_extractor.sinks.schema import spec_for

if TYPE_CHECKING:
    import pyarrow as pa

DECIMAL_PRECISION = 38
DECIMAL_SCALE = 18
DEFAULT_BATCH_ROWS = 50_000
_FUNDING_WINDOW = timedelta(days=365)  # at most one row per hour: < 9k rows
_TRADES_WINDOW = timedelta(minutes=10)  # busy contracts trade thousands of times a minute
_MS = timedelta(milliseconds=1)


def resolve_table(name: str) -> str:
    """``klines_m5``, ``m5`` or ``5m`` -> ``klines_m5``; other tables (``funding_rates``, ``mark_klines_h1``,
    ``open_interest`` ...) as is."""
    return Dataset.parse(name).table


def window_for(dataset: Dataset, batch_rows: int = DEFAULT_BATCH_ROWS) -> timedelta:
    """Time span read at once: ``batch_rows`` candles for klines, fixed spans for funding and trades."""
    grid = dataset.grid
    if grid is not None:
        return grid.delta * max(1, batch_rows)
    if dataset.shape is Shape.EVENTS:
        return _FUNDING_WINDOW
    return _TRADES_WINDOW


def arrow_type(col_type: str) -> pa.DataType:
    import pyarrow as pa

    return {
        "symbol": pa.string(),
        "str": pa.string(),
        "text": pa.string(),
        "time": pa.timestamp("ms", tz="UTC"),
        "dec": pa.decimal128(DECIMAL_PRECISION, DECIMAL_SCALE),
        "int": pa.int64(),
        "bool": pa.bool_(),
    }[col_type]


def arrow_schema(table: str) -> pa.Schema:
    """The Arrow schema of a data table: exact decimals, aware UTC millisecond timestamps."""
    import pyarrow as pa

    spec = spec_for(table)
    return pa.schema([pa.field(c.name, arrow_type(c.type), nullable=c.nullable) for c in spec.columns])


def to_arrow(table: str, rows: Sequence[dict[str, Any]]) -> pa.Table:
    """Rows as dicts (Decimal, aware datetimes) -> an Arrow table; a value that would be rounded is an error."""
    import pyarrow as pa

    schema = arrow_schema(table)
    try:
        return pa.Table.from_pydict({f.name: [r.get(f.name) for r in rows] for f in schema}, schema=schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise InputError(f"{table}: a value does not fit decimal({DECIMAL_PRECISION},{DECIMAL_SCALE}): {exc}") from None


@dataclass(frozen=True)
class Batch:
    """Rows of one symbol in ``[start, end)``, in key order."""

    table: str
    symbol: str
    start: datetime
    end: datetime
    rows: list[dict[str, Any]]


def symbols_of(sink: Store, dataset: Dataset, symbols: Sequence[str] | None) -> list[str]:
    """The symbols asked for, else every symbol stored in ``dataset`` (distinct on the key's first column)."""
    if symbols:
        return [s.strip().upper() for s in symbols if s.strip()]
    return list(sink.symbols(dataset))


def _bounds(
    sink: Store, dataset: Dataset, symbol: str, start: datetime | None, end: datetime | None
) -> tuple[Any, Any]:
    lo = utc_ms(start) if start is not None else sink.first_time(dataset, symbol)
    if end is not None:
        hi = utc_ms(end)
    else:
        last = sink.last_time(dataset, symbol)
        hi = None if last is None else last + _MS
    return lo, hi


def month_start(dt: datetime) -> datetime:
    return dt.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def next_month(dt: datetime) -> datetime:
    first = month_start(dt)
    return first.replace(year=first.year + 1, month=1) if first.month == 12 else first.replace(month=first.month + 1)


def iter_batches(
    sink: Store,
    table: str,
    symbols: Sequence[str] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    split_months: bool = False,
) -> Iterator[Batch]:
    """Stream ``table`` per symbol in key order, one bounded time window at a time (``[start, end)``).

    With ``split_months`` no batch crosses a calendar month (UTC), so callers can cut files per month.
    """
    dataset = Dataset.parse(table)
    table = dataset.table
    if start is not None and end is not None and end <= start:
        raise InputError("end must be after start")
    step = window_for(dataset, batch_rows)
    for symbol in symbols_of(sink, dataset, symbols):
        lo, hi = _bounds(sink, dataset, symbol, start, end)
        if lo is None or hi is None:
            continue
        t = lo
        while t < hi:
            stop = min(t + step, hi)
            if split_months:
                stop = min(stop, next_month(t))
            rows = sink.read(dataset, symbol, t, stop)
            if rows:
                yield Batch(table, symbol, t, stop, rows)
            t = stop


def open_store(store: Any = None, conn_id: str | None = None) -> tuple[Store, bool]:
    """A Sink instance as given, or a named store (``catalog.STORE_NAMES``; default: the configured one).

    Returns the sink and whether the caller opened it (and so must close it).
    """
    if isinstance(store, Store):
        return store, False
    if isinstance(store, Sink):
        raise InputError(f"cannot read from {store.name!r}: use {catalog.sink_list(catalog.STORE_NAMES)}")
    from binance_extractor import config
    from binance_extractor.sinks import open_sink, store_names

    name = store or next(iter(store_names(config.sink_names())), catalog.DEFAULT_STORE)
    if name not in catalog.STORE_NAMES:
        raise InputError(f"cannot read from {name!r}: use {catalog.sink_list(catalog.STORE_NAMES)}")
    opened = open_sink(name, conn_id)
    assert isinstance(opened, Store)  # every name in STORE_NAMES opens a Store
    return opened, True


def _time(value: datetime | str | int | None) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    from binance_extractor.timeutil import parse_time

    return parse_time(str(value))


def read(
    table: str,
    symbols: Sequence[str] | str | None = None,
    start: datetime | str | int | None = None,
    end: datetime | str | int | None = None,
    store: Any = None,
    *,
    conn_id: str | None = None,
    engine: str = "pandas",
) -> Any:
    """Stored rows of ``table`` for ``symbols`` in ``[start, end)`` as a pandas (default) or polars DataFrame.

    Prices and quantities are exact decimals (Arrow ``decimal128(38, 18)`` columns), times aware UTC; rows are
    ordered by symbol then key. ``store`` is a Sink or a store's name (default: the configured
    store, as the DAGs write it); ``start``/``end`` take datetimes, ISO 8601 text or epoch milliseconds.
    """
    import pyarrow as pa

    if engine not in ("pandas", "polars"):
        raise InputError(f"unknown engine {engine!r}: use pandas or polars")
    table = resolve_table(table)
    names = symbols.split(",") if isinstance(symbols, str) else symbols
    sink, owned = open_store(store, conn_id)
    try:
        parts = [to_arrow(table, b.rows) for b in iter_batches(sink, table, names, _time(start), _time(end))]
    finally:
        if owned:
            sink.close()
    data = pa.concat_tables(parts) if parts else arrow_schema(table).empty_table()
    if engine == "polars":
        try:
            import polars as pl
        except ImportError:
            raise InputError("engine='polars' needs the polars package installed") from None
        return pl.from_arrow(data)
    import pandas as pd

    return data.to_pandas(types_mapper=pd.ArrowDtype)
