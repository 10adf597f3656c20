"""Columnar archive klines: one CSV file parsed and validated as whole columns with pyarrow, never row by row.

Why: the per-row path (csv module, Pydantic model, Decimal, datetime) costs ~85 us a candle and capped archive
backfills at REST speed. Here pyarrow's C++ CSV reader parses a file in one call, the model's rules run as
vectorized compute kernels on exact ``decimal128(38, 18)`` columns, and the prices travel on as the exchange's
own strings (never a float) into the sinks' bulk loaders. A file that breaks any rule raises ``ValidationError``
naming symbol and time, and nothing of it is written. The REST path keeps the Pydantic models.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from binance_extractor.catalog import DataKind
from binance_extractor.errors import ValidationError
from binance_extractor.models import Kline
from binance_extractor.symbols import is_symbol
from binance_extractor.timeframes import Timeframe
from binance_extractor.timeutil import iso, ms_to_dt

MICROS_THRESHOLD = 10**14  # epoch ms stay below this until year 5138; epoch us are above it since 1973
FILE_COLUMNS = (
    "open_time", "open", "high", "low", "close", "volume", "close_time", "quote_volume", "count",
    "taker_buy_volume", "taker_buy_quote_volume", "ignore",
)  # fmt: skip
# archive column -> the table's column name (schema.KLINE_COLUMNS order, without symbol)
DB_NAMES = {
    "open_time": "open_time",
    "close_time": "close_time",
    "open": "open",
    "high": "high",
    "low": "low",
    "close": "close",
    "volume": "volume",
    "quote_volume": "quote_volume",
    "count": "trade_count",
    "taker_buy_volume": "taker_buy_base_volume",
    "taker_buy_quote_volume": "taker_buy_quote_volume",
}
DECIMALS = ("open", "high", "low", "close", "volume", "quote_volume", "taker_buy_volume", "taker_buy_quote_volume")
VOLUMES = ("volume", "quote_volume", "taker_buy_volume", "taker_buy_quote_volume")
EXACT = pa.decimal128(38, 18)  # the MySQL column's range: a value it would round fails here already
KLINE_ORDER = (
    "open_time", "close_time", "open", "high", "low", "close", "volume", "quote_volume", "trade_count",
    "taker_buy_base_volume", "taker_buy_quote_volume",
)  # fmt: skip


@dataclass(frozen=True)
class KlineBlock:
    """Validated candles of one (symbol, interval) as columns: times int64 epoch ms, prices exact strings.

    Sorted by open time, each open time once, every row closed and consistent. ``columns`` is in table order
    (``KLINE_ORDER``) with the table's column names.
    """

    symbol: str
    timeframe: Timeframe
    columns: pa.Table

    def __len__(self) -> int:
        return int(self.columns.num_rows)

    @property
    def interval(self) -> str:
        return self.timeframe.interval

    @property
    def table(self) -> str:
        return DataKind.KLINES.table(self.timeframe)

    def open_ms(self) -> list[int]:
        return [int(v) for v in self.columns["open_time"].to_pylist()]

    @staticmethod
    def concat(blocks: list[KlineBlock]) -> KlineBlock:
        """Consecutive files of one (symbol, interval), in time order, as one block: one bulk load, one commit."""
        first = blocks[0]
        if any((b.symbol, b.timeframe) != (first.symbol, first.timeframe) for b in blocks):
            raise ValueError("only blocks of one symbol and interval can be joined")
        return KlineBlock(first.symbol, first.timeframe, pa.concat_tables([b.columns for b in blocks]))

    def slice(self, start: int, length: int) -> KlineBlock:
        return KlineBlock(self.symbol, self.timeframe, self.columns.slice(start, length))

    def text_table(self) -> pa.Table:
        """Every column of the table (symbol first) as text a bulk loader reads: times ``YYYY-MM-DD HH:MM:SS.fff``
        (UTC wall time), prices as the exchange wrote them, counts as integers."""
        n = len(self)
        out: dict[str, Any] = {"symbol": pa.array([self.symbol] * n, pa.string())}
        for name in KLINE_ORDER:
            col = self.columns[name]
            if name in ("open_time", "close_time"):
                col = pc.cast(pc.cast(col, pa.timestamp("ms")), pa.string())
            out[name] = col
        return pa.table(out)

    def write_csv(self, sink: Any) -> None:
        """Header-less CSV of ``text_table()`` to a path or binary file (no field needs quoting)."""
        pcsv.write_csv(self.text_table(), sink, pcsv.WriteOptions(include_header=False, quoting_style="none"))

    def csv_bytes(self) -> bytes:
        buf = io.BytesIO()
        self.write_csv(buf)
        return buf.getvalue()

    def sql_rows(self, time_conv: Any = None) -> list[tuple[Any, ...]]:
        """Row tuples in table order (symbol first); ``time_conv`` maps epoch ms (default: kept as int)."""
        cols = [self.columns[name].to_pylist() for name in KLINE_ORDER]
        if time_conv is not None:
            for i in (0, 1):
                cols[i] = [time_conv(v) for v in cols[i]]
        symbols = [self.symbol] * len(self)
        return list(zip(symbols, *cols, strict=True))

    def dicts(self) -> Iterator[dict[str, Any]]:
        """Row dicts with aware UTC datetimes and the exact decimal strings (for document stores)."""
        cols = {name: self.columns[name].to_pylist() for name in KLINE_ORDER}
        for name in ("open_time", "close_time"):
            cols[name] = [ms_to_dt(v) for v in cols[name]]
        for i in range(len(self)):
            row = {"symbol": self.symbol}
            for name in KLINE_ORDER:
                row[name] = cols[name][i]
            yield row

    def to_klines(self) -> list[Kline]:
        """The same candles as models (for sinks without a bulk path, and for merging with REST rows)."""
        out = []
        for row in self.dicts():
            out.append(Kline.build(interval=self.interval, **row))
        return out


def parse_block(data: bytes, symbol: str, tf: Timeframe, lo_ms: int, hi_ms: int) -> KlineBlock:
    """Validated candles of an archive CSV (header or not; ms or us times) with open time in ``[lo_ms, hi_ms)``."""
    what = f"{symbol} {tf.interval}"
    if not is_symbol(symbol):
        raise ValidationError(f"Kline rejected ({what}): malformed symbol {symbol!r}")
    table = _read(data, what)
    opens = table["open_time"]
    closes = table["close_time"]
    micros = pc.greater(opens, MICROS_THRESHOLD)
    if pc.any(micros).as_py():  # microseconds: exact integer division, no float
        opens = pc.if_else(micros, pc.divide(opens, 1000), opens)
        closes = pc.if_else(micros, pc.divide(closes, 1000), closes)
        table = table.set_column(table.schema.get_field_index("open_time"), "open_time", opens)
        table = table.set_column(table.schema.get_field_index("close_time"), "close_time", closes)
    keep = pc.and_(pc.greater_equal(opens, lo_ms), pc.less(opens, hi_ms))
    table = table.filter(keep)
    table = table.take(pc.sort_indices(table["open_time"]))
    _validate(table, tf, what)
    cols = {DB_NAMES[name]: table[name] for name in FILE_COLUMNS if name in DB_NAMES}
    return KlineBlock(symbol, tf, pa.table({name: cols[name] for name in KLINE_ORDER}))


_FILE_NAMES = {db: file for file, db in DB_NAMES.items()}


def block_of(symbol: str, tf: Timeframe, columns: pa.Table) -> KlineBlock:
    """Validated candles from columns named as the table's (``KLINE_ORDER``: times int64 epoch ms, prices exact
    decimal text), sorted by open time: the archive file's rules for rows restored from an export or copied
    from another store, so a bad row fails the block before anything of it is written."""
    what = f"{symbol} {tf.interval}"
    if not is_symbol(symbol):
        raise ValidationError(f"Kline rejected ({what}): malformed symbol {symbol!r}")
    table = columns.select(list(KLINE_ORDER))
    table = table.take(pc.sort_indices(table["open_time"]))
    _validate(table.rename_columns([_FILE_NAMES[name] for name in KLINE_ORDER]), tf, what)
    return KlineBlock(symbol, tf, table)


def _read(data: bytes, what: str) -> pa.Table:
    body = data.lstrip()
    if not body:
        return pa.table({name: pa.array([], pa.int64() if name in _INTS else pa.string()) for name in FILE_COLUMNS})
    header = not body[:1].isdigit()
    types = {name: (pa.int64() if name in _INTS else pa.string()) for name in FILE_COLUMNS}
    try:
        return pcsv.read_csv(
            io.BytesIO(body),
            read_options=pcsv.ReadOptions(column_names=list(FILE_COLUMNS), skip_rows=1 if header else 0),
            parse_options=pcsv.ParseOptions(newlines_in_values=False),
            convert_options=pcsv.ConvertOptions(
                column_types=types, strings_can_be_null=False, quoted_strings_can_be_null=False
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        detail = " ".join(str(exc).split())[:160]
        raise ValidationError(f"Kline rejected ({what}): malformed archive file: {detail}") from None


_INTS = frozenset({"open_time", "close_time", "count"})


def _first_bad(table: pa.Table, bad: pa.ChunkedArray | pa.Array, what: str, why: str) -> None:
    """Raise naming the first row where ``bad`` holds (null counts as bad)."""
    flags = pc.fill_null(bad, True)
    if not pc.any(flags).as_py():
        return
    i = int(pc.index(flags, True).as_py())
    t = int(table["open_time"][i].as_py())
    raise ValidationError(f"Kline rejected ({what.split()[0]} at {_when(t)}): {why}")


def _when(ms: int) -> str:
    try:
        return iso(ms_to_dt(ms))
    except (OverflowError, ValueError, OSError):
        return str(ms)


def _validate(table: pa.Table, tf: Timeframe, what: str) -> None:
    """The model's rules (models.Kline), as column operations over the whole file."""
    if table.num_rows == 0:
        return
    opens = table["open_time"]
    if pc.count_distinct(opens).as_py() != table.num_rows:  # sorted: a duplicate follows its twin
        same = pc.equal(pc.pairwise_diff(opens.combine_chunks()), 0)
        dup = int(opens[int(pc.index(same, True).as_py())].as_py())
        raise ValidationError(f"Kline rejected ({what.split()[0]} at {_when(dup)}): duplicate open time in the file")
    if tf.is_monthly:  # pragma: no cover - the archive path refuses monthly candles before parsing
        raise ValidationError(f"Kline rejected ({what}): monthly candles are not archived per file")
    expected_close = pc.subtract(pc.add(opens, tf.ms), 1)
    _first_bad(
        table, pc.not_equal(table["close_time"], expected_close), what, "close_time != open_time + interval - 1 ms"
    )
    dec: dict[str, pa.ChunkedArray] = {}
    for name in DECIMALS:
        try:
            dec[name] = pc.cast(table[name], EXACT)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise ValidationError(
                f"Kline rejected ({what}): {name} is not an exact decimal of at most 18 places "
                f"({' '.join(str(exc).split())[:120]})"
            ) from None
    o, h, low, c = dec["open"], dec["high"], dec["low"], dec["close"]
    _first_bad(table, pc.or_(pc.or_(pc.less(h, o), pc.less(h, c)), pc.less(h, low)), what, "high below open/close/low")
    _first_bad(table, pc.or_(pc.greater(low, o), pc.greater(low, c)), what, "low above open/close")
    zero = pa.scalar(0, EXACT)
    _first_bad(table, pc.less(low, zero), what, "negative price")
    for name in VOLUMES:
        _first_bad(table, pc.less(dec[name], zero), what, f"negative {DB_NAMES[name]}")
    _first_bad(table, pc.less(table["count"], 0), what, "negative trade_count")


__all__ = ["EXACT", "KLINE_ORDER", "KlineBlock", "block_of", "parse_block"]
