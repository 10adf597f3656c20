"""Columnar archive klines: one CSV file parsed and validated as whole columns with pyarrow, never row by row.

Why: the per-row path (csv module, Pydantic model, Decimal, datetime) costs ~85 us a candle and capped archive
backfills at REST speed. Here pyarrow's C++ CSV reader parses a file in one call, the model's rules run as
vectorized compute kernels on exact ``decimal128(38, 18)`` columns, and the prices travel on as the exchange's
own strings (never a float) into the sinks' bulk loaders. A file that breaks any rule raises ``ValidationError``
naming symbol and time, and nothing of it is written. The REST path keeps the Pydantic models.

One path for every kline series (trade, mark, index, premium index): a block knows its ``DataKind``, and the
catalog gives its table's columns; the file-to-table column names and the rules per series are below. A price
series keeps ``open, high, low, close`` and the sample count (field 8); its volume fields are "ignore".
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from binance_extractor.catalog import DataKind, price_of
from binance_extractor.errors import ValidationError
from binance_extractor.models import Kline
from binance_extractor.prices import Price
from binance_extractor.symbols import is_symbol
from binance_extractor.timeframes import Timeframe
from binance_extractor.timeutil import iso, ms_to_dt

MICROS_THRESHOLD = 10**14  # epoch ms stay below this until year 5138; epoch us are above it since 1973
FILE_COLUMNS = (
    "open_time", "open", "high", "low", "close", "volume", "close_time", "quote_volume", "count",
    "taker_buy_volume", "taker_buy_quote_volume", "ignore",
)  # fmt: skip
# archive column -> the table's column name, per series (the catalog's columns, without symbol)
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
PRICE_DB_NAMES = {
    "open_time": "open_time",
    "close_time": "close_time",
    "open": "open",
    "high": "high",
    "low": "low",
    "close": "close",
    "count": "sample_count",  # field 8: the number of price samples the candle was built from
}
DECIMALS = ("open", "high", "low", "close", "volume", "quote_volume", "taker_buy_volume", "taker_buy_quote_volume")
VOLUMES = ("volume", "quote_volume", "taker_buy_volume", "taker_buy_quote_volume")
PRICES = ("open", "high", "low", "close")
EXACT = pa.decimal128(38, 18)  # the MySQL column's range: a value it would round fails here already


def table_order(kind: DataKind) -> tuple[str, ...]:
    """The table's columns without ``symbol``, in the catalog's order: a block's columns."""
    return tuple(c.name for c in kind.entry.columns if c.name != "symbol")


def file_names(kind: DataKind) -> dict[str, str]:
    """Archive column -> table column of a kline series; any other kind has no columnar path (InputError)."""
    names = DB_NAMES if price_of(kind) is Price.TRADE else PRICE_DB_NAMES
    if set(names.values()) != set(table_order(kind)):  # pragma: no cover - the catalog and this map drifted
        raise AssertionError(f"{kind}: archive columns {sorted(names.values())} != table {table_order(kind)}")
    return names


KLINE_ORDER = table_order(DataKind.KLINES)


@dataclass(frozen=True)
class KlineBlock:
    """Validated candles of one (symbol, interval) of one series as columns: times int64 epoch ms, prices exact
    strings.

    Sorted by open time, each open time once, every row closed and consistent. ``columns`` is in table order
    (``table_order(kind)``: ``KLINE_ORDER`` for trade klines) with the table's column names. For the index
    series ``symbol`` is the pair.
    """

    symbol: str
    timeframe: Timeframe
    columns: pa.Table
    kind: DataKind = DataKind.KLINES
    # ``csv_bytes()`` rendered ahead (``rendered``): the bulk loaders' input, prepared off the writer's thread
    csv: bytes | None = field(default=None, compare=False, repr=False)

    @property
    def order(self) -> tuple[str, ...]:
        return table_order(self.kind)

    def __len__(self) -> int:
        return int(self.columns.num_rows)

    @property
    def interval(self) -> str:
        return self.timeframe.interval

    @property
    def table(self) -> str:
        return self.kind.table(self.timeframe)

    def open_ms(self) -> list[int]:
        return [int(v) for v in self.columns["open_time"].to_pylist()]

    @staticmethod
    def concat(blocks: list[KlineBlock]) -> KlineBlock:
        """Consecutive files of one (series, symbol, interval), in time order, as one block: one bulk load, one
        commit."""
        first = blocks[0]
        if any((b.kind, b.symbol, b.timeframe) != (first.kind, first.symbol, first.timeframe) for b in blocks):
            raise ValueError("only blocks of one series, symbol and interval can be joined")
        columns = pa.concat_tables([b.columns for b in blocks])
        texts = [b.csv for b in blocks]
        csv = b"".join(t for t in texts if t is not None) if all(t is not None for t in texts) else None
        return KlineBlock(first.symbol, first.timeframe, columns, first.kind, csv)

    def slice(self, start: int, length: int) -> KlineBlock:
        return KlineBlock(self.symbol, self.timeframe, self.columns.slice(start, length), self.kind)

    def rendered(self) -> KlineBlock:
        """The same block carrying its CSV (``csv_bytes``), rendered now: the pipeline's producer calls it for the
        bulk loaders (``Sink.bulk_csv``), so the writer only loads. Rows end in a newline, so the CSVs of
        consecutive blocks join into the CSV of their ``concat``."""
        return self if self.csv is not None else replace(self, csv=self.csv_bytes())

    def text_table(self) -> pa.Table:
        """Every column of the table (symbol first) as text a bulk loader reads: times ``YYYY-MM-DD HH:MM:SS.fff``
        (UTC wall time), prices as the exchange wrote them, counts as integers."""
        n = len(self)
        out: dict[str, Any] = {"symbol": pa.array([self.symbol] * n, pa.string())}
        for name in self.order:
            col = self.columns[name]
            if name in ("open_time", "close_time"):
                col = pc.cast(pc.cast(col, pa.timestamp("ms")), pa.string())
            out[name] = col
        return pa.table(out)

    def write_csv(self, sink: Any) -> None:
        """Header-less CSV of ``text_table()`` to a path or binary file (no field needs quoting)."""
        if self.csv is not None and hasattr(sink, "write"):
            sink.write(self.csv)
            return
        pcsv.write_csv(self.text_table(), sink, pcsv.WriteOptions(include_header=False, quoting_style="none"))

    def csv_bytes(self) -> bytes:
        if self.csv is not None:
            return self.csv
        buf = io.BytesIO()
        self.write_csv(buf)
        return buf.getvalue()

    def sql_rows(self, time_conv: Any = None) -> list[tuple[Any, ...]]:
        """Row tuples in table order (symbol first); ``time_conv`` maps epoch ms (default: kept as int)."""
        cols = [self.columns[name].to_pylist() for name in self.order]
        if time_conv is not None:
            for i in (0, 1):
                cols[i] = [time_conv(v) for v in cols[i]]
        symbols = [self.symbol] * len(self)
        return list(zip(symbols, *cols, strict=True))

    def dicts(self) -> Iterator[dict[str, Any]]:
        """Row dicts with aware UTC datetimes and the exact decimal strings (for document stores)."""
        order = self.order
        cols = {name: self.columns[name].to_pylist() for name in order}
        for name in ("open_time", "close_time"):
            cols[name] = [ms_to_dt(v) for v in cols[name]]
        for i in range(len(self)):
            row = {"symbol": self.symbol}
            for name in order:
                row[name] = cols[name][i]
            yield row

    def to_models(self) -> list[Any]:
        """The same candles as the series' models (for sinks without a bulk path, and for merging with REST rows)."""
        build = self.kind.model.build
        return [build(interval=self.interval, **row) for row in self.dicts()]

    def to_klines(self) -> list[Kline]:
        """Trade klines as models (``to_models`` for any series)."""
        return self.to_models()


def parse_block(
    data: bytes, symbol: str, tf: Timeframe, lo_ms: int, hi_ms: int, kind: DataKind = DataKind.KLINES
) -> KlineBlock:
    """Validated candles of an archive CSV (header or not; ms or us times) with open time in ``[lo_ms, hi_ms)``;
    ``kind`` is the series (trade klines, or the mark/index/premium-index klines of their own folders)."""
    names = file_names(kind)
    who = _who(kind, symbol, tf)
    if not is_symbol(symbol):
        raise ValidationError(f"{who}: malformed symbol {symbol!r}")
    table = _read(data, who)
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
    _validate(table, tf, kind, who)
    cols = {db: table[file] for file, db in names.items()}
    return KlineBlock(symbol, tf, pa.table({name: cols[name] for name in table_order(kind)}), kind)


def block_of(symbol: str, tf: Timeframe, columns: pa.Table, kind: DataKind = DataKind.KLINES) -> KlineBlock:
    """Validated candles from columns named as the table's (``table_order(kind)``: times int64 epoch ms, prices
    exact decimal text), sorted by open time: the archive file's rules for rows restored from an export or copied
    from another store, so a bad row fails the block before anything of it is written."""
    to_file = {db: file for file, db in file_names(kind).items()}
    who = _who(kind, symbol, tf)
    if not is_symbol(symbol):
        raise ValidationError(f"{who}: malformed symbol {symbol!r}")
    order = table_order(kind)
    table = columns.select(list(order))
    table = table.take(pc.sort_indices(table["open_time"]))
    _validate(table.rename_columns([to_file[name] for name in order]), tf, kind, who)
    return KlineBlock(symbol, tf, table, kind)


def _who(kind: DataKind, symbol: str, tf: Timeframe) -> str:
    """``Kline rejected (BTCUSDT 5m)``: how the model of the series names a refused row."""
    return f"{kind.model.__name__} rejected ({symbol} {tf.interval})"


def _read(data: bytes, who: str) -> pa.Table:
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
        raise ValidationError(f"{who}: malformed archive file: {detail}") from None


_INTS = frozenset({"open_time", "close_time", "count"})


def _at(who: str, ms: int) -> str:
    """``Kline rejected (BTCUSDT 5m)`` -> ``Kline rejected (BTCUSDT at 2025-01-01T00:00:00.000Z)``."""
    head, _, rest = who.partition(" (")
    return f"{head} ({rest.split()[0]} at {_when(ms)})"


def _first_bad(table: pa.Table, bad: pa.ChunkedArray | pa.Array, who: str, why: str) -> None:
    """Raise naming the first row where ``bad`` holds (null counts as bad)."""
    flags = pc.fill_null(bad, True)
    if not pc.any(flags).as_py():
        return
    i = int(pc.index(flags, True).as_py())
    t = int(table["open_time"][i].as_py())
    raise ValidationError(f"{_at(who, t)}: {why}")


def _when(ms: int) -> str:
    try:
        return iso(ms_to_dt(ms))
    except (OverflowError, ValueError, OSError):
        return str(ms)


def _validate(table: pa.Table, tf: Timeframe, kind: DataKind, who: str) -> None:
    """The model's rules (models.Kline, derivative_models.PriceKline), as column operations over the whole file."""
    if table.num_rows == 0:
        return
    price = price_of(kind)
    opens = table["open_time"]
    if pc.count_distinct(opens).as_py() != table.num_rows:  # sorted: a duplicate follows its twin
        same = pc.equal(pc.pairwise_diff(opens.combine_chunks()), 0)
        dup = int(opens[int(pc.index(same, True).as_py())].as_py())
        raise ValidationError(f"{_at(who, dup)}: duplicate open time in the file")
    if tf.is_monthly:  # pragma: no cover - the archive path refuses monthly candles before parsing
        raise ValidationError(f"{who}: monthly candles are not archived per file")
    expected_close = pc.subtract(pc.add(opens, tf.ms), 1)
    _first_bad(
        table, pc.not_equal(table["close_time"], expected_close), who, "close_time != open_time + interval - 1 ms"
    )
    dec: dict[str, pa.ChunkedArray] = {}
    for name in DECIMALS if price is Price.TRADE else PRICES:
        try:
            dec[name] = pc.cast(table[name], EXACT)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise ValidationError(
                f"{who}: {name} is not an exact decimal of at most 18 places ({' '.join(str(exc).split())[:120]})"
            ) from None
    o, h, low, c = dec["open"], dec["high"], dec["low"], dec["close"]
    _first_bad(table, pc.or_(pc.or_(pc.less(h, o), pc.less(h, c)), pc.less(h, low)), who, "high below open/close/low")
    _first_bad(table, pc.or_(pc.greater(low, o), pc.greater(low, c)), who, "low above open/close")
    zero = pa.scalar(0, EXACT)
    if not price.signed:  # the premium index is a signed ratio
        _first_bad(table, pc.less(low, zero), who, "negative price")
    if price is Price.TRADE:
        for name in VOLUMES:
            _first_bad(table, pc.less(dec[name], zero), who, f"negative {DB_NAMES[name]}")
    count = file_names(kind)["count"]
    _first_bad(table, pc.less(table["count"], 0), who, f"negative {count}")


__all__ = ["EXACT", "KLINE_ORDER", "KlineBlock", "block_of", "file_names", "parse_block", "table_order"]
