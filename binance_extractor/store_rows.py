"""Rows as dicts (read from a store, or from an export file) into a store through its fastest exact path.

Why one module: ``import`` and ``copy`` both hold rows as dicts (Decimal or plain decimal text, aware UTC times)
and must write them exactly and idempotently. Klines go through ``Sink.write_block`` (LOAD DATA on MySQL, COPY
on PostgreSQL), validated as whole columns like an archive file; the other tables through the models and
``Sink.write``. ``prepare`` validates without writing, so a caller can check a whole input before the first row
is written.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import pyarrow as pa

from binance_extractor.archive_columns import KlineBlock, block_of, table_order
from binance_extractor.errors import ValidationError
from binance_extractor.kinds import Dataset
from binance_extractor.sinks.base import Row, Sink, Store

Prepared = KlineBlock | list[Row]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_TIMES = ("open_time", "close_time")


def plain(value: Decimal | str) -> str:
    """Exact decimal text in plain digits (``0.00000010``): what every store keeps for the same Decimal."""
    if isinstance(value, str):
        try:
            value = Decimal(value)
        except InvalidOperation:
            raise ValidationError(f"not a decimal number: {value!r:.40}") from None
    if not value.is_finite():
        raise ValidationError(f"not a finite decimal: {value}")
    return format(value, "f")


def _ms(value: datetime | int) -> int:
    if isinstance(value, int):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - _EPOCH) // _MS


def kline_block(dataset: Dataset, symbol: str, rows: Sequence[dict[str, Any]]) -> KlineBlock:
    """One symbol's candles (of any kline series) as a validated columnar block (the bulk loaders' input)."""
    assert dataset.timeframe is not None
    ints = {c.name for c in dataset.entry.columns if c.type == "int"}
    columns: dict[str, pa.Array] = {}
    for name in table_order(dataset.kind):
        values = [r[name] for r in rows]
        if name in _TIMES:
            columns[name] = pa.array([_ms(v) for v in values], pa.int64())
        elif name in ints:
            columns[name] = pa.array(values, pa.int64())
        elif all(type(v) is Decimal for v in values):  # read from a store: finite Decimals, formatted at C speed
            columns[name] = pa.array([format(v, "f") for v in values], pa.string())
        else:
            columns[name] = pa.array([None if v is None else plain(v) for v in values], pa.string())
    return block_of(symbol, dataset.timeframe, pa.table(columns), dataset.kind)


def _by_symbol(rows: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(r["symbol"], []).append(r)
    return groups


def prepare(dataset: Dataset, rows: Sequence[dict[str, Any]], *, trusted: bool = False) -> list[Prepared]:
    """Validate ``rows`` of ``dataset`` into what the store writes: a block per symbol of a kline series, else models.

    Raises ``ValidationError`` (naming symbol and time) for any row the models would refuse. ``trusted`` rows
    (read back from a store, which validated them when they were written, typed by its reader) become models
    without re-validation; klines are always checked, as whole columns."""
    if not rows:
        return []
    if dataset.timeframe is not None:  # every kline series: as whole columns
        return [kline_block(dataset, symbol, group) for symbol, group in _by_symbol(rows).items()]
    model = dataset.kind.model
    fields = model.model_fields
    if trusted:
        return [[model.model_construct(**{k: r[k] for k in fields if k in r}) for r in rows]]
    return [[model.build(**{k: v for k, v in r.items() if k in fields}) for r in rows]]


def read_prepared(
    store: Store, dataset: Dataset, symbol: str, start: datetime | None, end: datetime | None
) -> list[Prepared]:
    """One symbol's rows of a store, ready for another store: klines straight from the store's columns (no Python
    object per value), the other tables as models of the rows it validated when they were written."""
    if dataset.timeframe is not None:
        columns = store.read_columns(dataset, symbol, start, end)
        return [block_of(symbol, dataset.timeframe, columns, dataset.kind)] if columns.num_rows else []
    return prepare(dataset, store.read(dataset, symbol, start, end), trusted=True)


def write(sink: Sink, dataset: Dataset, prepared: Sequence[Prepared]) -> int:
    """Upsert prepared batches (one transaction each: a block is one bulk load); returns rows written."""
    written = 0
    for batch in prepared:
        if isinstance(batch, KlineBlock):
            written += sink.write_block(dataset, batch)
        else:
            written += sink.write(dataset, batch)
    return written
