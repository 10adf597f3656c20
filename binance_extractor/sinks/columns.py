"""A table's rows as Arrow columns in the form the bulk loaders read: decimals as exact plain text, times as int64
epoch milliseconds, integers int64, booleans, strings.

Why: copying candles between stores through Python ``Decimal``/``datetime`` objects costs ~20 us a row; as
columns the values go from one database's text to the other's bulk loader without a Python object per value.
``Store.read_columns`` returns this; SQL stores select it directly, others convert ``Store.read`` rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from binance_extractor.sinks.schema import ColType, TableSpec

if TYPE_CHECKING:
    import pyarrow as pa

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def arrow_type(type_: ColType) -> pa.DataType:
    import pyarrow as pa

    return {"time": pa.int64(), "int": pa.int64(), "bool": pa.bool_()}.get(type_, pa.string())


def plain_text(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Decimal text in plain digits: text a store kept in exponent form (``1.0E-7``) is rewritten, exactly."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    odd = pc.fill_null(pc.match_substring(pc.utf8_upper(arr), "E"), False)
    if not pc.any(odd).as_py():
        return arr
    return pa.array([None if v is None else format(Decimal(v), "f") for v in arr.to_pylist()], pa.string())


def from_values(spec: TableSpec, columns: Sequence[list[Any]]) -> pa.Table:
    """Raw column values (times already epoch ms, decimals text) -> the Arrow table."""
    import pyarrow as pa

    arrays = {}
    for c, values in zip(spec.columns, columns, strict=True):
        if c.type == "bool":
            arrays[c.name] = pa.array([None if v is None else bool(v) for v in values], pa.bool_())
        elif c.type == "dec":
            arrays[c.name] = plain_text(pa.array(values, pa.string()))
        else:
            arrays[c.name] = pa.array(values, arrow_type(c.type))
    return pa.table(arrays)


def from_rows(spec: TableSpec, rows: Sequence[dict[str, Any]]) -> pa.Table:
    """``Store.read`` rows (Decimal, aware datetimes) -> the Arrow table."""

    def value(type_: ColType, v: Any) -> Any:
        if v is None:
            return None
        if type_ == "time":
            return (v - _EPOCH) // _MS
        if type_ == "dec":
            return format(v, "f")
        return v

    return from_values(spec, [[value(c.type, r.get(c.name)) for r in rows] for c in spec.columns])
