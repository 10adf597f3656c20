"""The columnar archive path: pyarrow parsing and the model's rules as column operations.

Files come from the loopback emulator's archive (all three layouts: no header + ms, header + ms, header + us);
the row path (csv module + Pydantic model) is the reference every block must equal.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
import requests

from binance_extractor import archive, timeframes
from binance_extractor.archive_columns import KlineBlock, parse_block
from binance_extractor.catalog import PRICE_KINDS, DataKind
from binance_extractor.derivative_models import PRICE_MODELS
from binance_extractor.errors import InputError, ValidationError
from binance_extractor.kinds import Dataset
from binance_extractor.prices import Price
from binance_extractor.sinks.base import check_block
from binance_extractor.timeutil import dt_to_ms, parse_time
from tests.emulator import Emulator
from tests.emulator import datasets as DS

NOW = dt_to_ms(parse_time("2025-03-10T12:34:56.789Z"))
PREFIX = "/data/futures/um"
HEADER = (
    "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,taker_buy_quote_volume,ignore"
)
ROW1 = "1735689600000,1.5000,1.6,1.4,1.55,10,1735689899999,15.5,3,5,7.75,0"
ROW2 = "1735689900000,1.55,1.6,1.5,1.5,2,1735690199999,3.1,1,1,1.55,0"

M5 = timeframes.parse("5m")


def ms(text: str) -> int:
    return dt_to_ms(parse_time(text))


@pytest.fixture
def emu(make_emulator: Callable[..., Emulator]) -> Emulator:
    return make_emulator(clock=lambda: NOW)


def served(emu: Emulator, path: str) -> bytes:
    body = requests.get(emu.archive_url + PREFIX + path, timeout=30).content
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        return zf.read(zf.namelist()[0])


@pytest.mark.parametrize(
    ("path", "layout"),
    [
        ("/monthly/klines/ETHUSDT/1h/ETHUSDT-1h-2021-11.zip", "no header, ms"),
        ("/monthly/klines/BTCUSDT/5m/BTCUSDT-5m-2022-01.zip", "header, ms"),
        ("/monthly/klines/BTCUSDT/5m/BTCUSDT-5m-2025-02.zip", "header, us"),
        ("/daily/klines/SOLUSDT/15m/SOLUSDT-15m-2025-03-02.zip", "header, us"),
    ],
)
def test_block_equals_the_row_path_for_every_file_layout(emu: Emulator, path: str, layout: str) -> None:
    data = served(emu, path)
    symbol, interval = path.split("/")[3], path.split("/")[4]
    assert data[:1].isdigit() == (layout == "no header, ms")
    block = parse_block(data, symbol, timeframes.parse(interval), 0, 2**62)
    rows, opens = archive.parse_csv(data.decode(), symbol, interval, 0, 2**62)
    assert len(block) == len(rows) > 0
    assert block.open_ms() == opens
    assert block.to_klines() == rows
    assert block.columns.schema.field("open").type == "string"  # never a float on the way
    lo, hi = opens[10], opens[20]
    window = parse_block(data, symbol, timeframes.parse(interval), lo, hi)
    assert window.open_ms() == opens[10:20]


def test_prices_travel_as_the_exchange_wrote_them() -> None:
    block = parse_block(f"{HEADER}\n{ROW2}\n{ROW1}\n".encode(), "XUSDT", M5, 0, 2**62)
    assert block.open_ms() == [1735689600000, 1735689900000]  # sorted
    (first, _) = block.sql_rows()
    assert first[:5] == ("XUSDT", 1735689600000, 1735689899999, "1.5000", "1.6")
    assert block.csv_bytes().splitlines()[0] == (
        b"XUSDT,2025-01-01 00:00:00.000,2025-01-01 00:04:59.999,1.5000,1.6,1.4,1.55,10,15.5,3,5,7.75"
    )
    k = block.to_klines()[0]
    assert k.open == Decimal("1.5000") and str(k.open) == "1.5000"


def test_microsecond_and_millisecond_files_give_the_same_block() -> None:
    us = ROW1.replace("600000,", "600000000,").replace("899999,", "899999999,")
    a = parse_block(f"{ROW1}\n".encode(), "XUSDT", M5, 0, 2**62)
    b = parse_block(f"{HEADER}\n{us}\n".encode(), "XUSDT", M5, 0, 2**62)
    assert a.columns.equals(b.columns)


def _bad(row1: str = ROW1, row2: str = ROW2) -> bytes:
    return f"{HEADER}\n{row1}\n{row2}\n".encode()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_bad(row2=ROW2.replace(",1.6,1.5,", ",1.4,1.5,")), r"XUSDT at 2025-01-01T00:05:00.000Z\): high below"),
        (_bad(row2=ROW2.replace(",1.6,1.5,1.5,", ",1.6,1.58,1.5,")), r"00:05:00.000Z\): low above open/close"),
        (_bad(row1=ROW1.replace(",10,", ",-10,")), r"00:00:00.000Z\): negative volume"),
        (_bad(row1=ROW1.replace(",7.75,", ",-7.75,")), r"negative taker_buy_quote_volume"),
        (_bad(row1=ROW1.replace(",3,5,", ",-3,5,")), r"negative trade_count"),
        (_bad(row1=ROW1.replace("1735689899999", "1735689899998")), r"close_time != open_time \+ interval - 1 ms"),
        (_bad(row2=ROW1), r"00:00:00.000Z\): duplicate open time"),
        (_bad(row1=ROW1.replace("1.5000", "NaN")), r"open is not an exact decimal"),
        (_bad(row1=ROW1.replace("1.5000", "1.5e400")), r"open is not an exact decimal"),
        (_bad(row1=ROW1.replace(",10,", ",1.1234567890123456789,")), r"volume is not an exact decimal"),
        (_bad(row1=ROW1 + ",extra"), r"malformed archive file"),
        (_bad(row1="17356x9600000" + ROW1[13:]), r"malformed archive file"),
    ],
)
def test_each_rule_rejects_the_file_naming_symbol_and_time(data: bytes, message: str) -> None:
    with pytest.raises(ValidationError, match=message) as err:
        parse_block(data, "XUSDT", M5, 0, 2**62)
    assert "\n" not in str(err.value) and "XUSDT" in str(err.value)


def test_the_model_rejects_the_same_rows() -> None:
    """Same rules as the model: every row the block refuses, the row path refuses too."""
    for row in (ROW2.replace(",1.6,1.5,", ",1.4,1.5,"), ROW1.replace(",10,", ",-10,")):
        with pytest.raises(ValidationError):
            archive.parse_csv(f"{row}\n", "XUSDT", "5m", 0, 2**62)
        with pytest.raises(ValidationError):
            parse_block(f"{row}\n".encode(), "XUSDT", M5, 0, 2**62)


def test_empty_file_and_empty_window() -> None:
    assert len(parse_block(b"", "XUSDT", M5, 0, 2**62)) == 0
    assert len(parse_block(f"{HEADER}\n".encode(), "XUSDT", M5, 0, 2**62)) == 0
    assert len(parse_block(_bad(), "XUSDT", M5, 0, 1)) == 0
    assert isinstance(parse_block(_bad(), "XUSDT", M5, 0, 2**62).slice(0, 1), KlineBlock)


def test_impossible_row_fails_the_archive_run_before_its_file_is_yielded(emu: Emulator) -> None:
    bad_open = ms("2025-02-10T12:00:00Z")
    row = emu.klines_rows("BTCUSDT", "5m", bad_open, bad_open)[0]
    emu.set_kline_override("BTCUSDT", "5m", bad_open, [*row[:2], "1.00", *row[3:]])  # high below low
    s, e = ms("2025-01-01"), ms("2025-03-01")
    got: list[KlineBlock] = []
    m5 = timeframes.parse("m5")
    it = archive.iter_klines(
        None, "BTCUSDT", m5, s, e, source="archive", now_ms=NOW, base_url=emu.archive_url, columnar=True
    )
    with pytest.raises(ValidationError, match=r"BTCUSDT at 2025-02-10T12:00:00\.000Z\): high below"):
        for block in it:
            assert isinstance(block, KlineBlock)
            got.append(block)
    assert [len(b) for b in got] == [31 * 288]  # January only: nothing of February left the iterator


# ----------------------------------------------------------------------------- mark/index/premium-index klines

PRICED = [Price.MARK, Price.INDEX, Price.PREMIUM]


def price_models(data: bytes, price: Price, symbol: str, interval: str) -> list[Any]:
    """The row path of a price series: the csv rows through the series' model (``PriceKline.from_rest``)."""
    rows, _ = archive.parse_rows(data.decode(), 0, 2**62, f"{symbol} {interval}")
    return [PRICE_MODELS[price].from_rest(symbol, interval, r) for r in rows]


@pytest.mark.parametrize("price", PRICED)
@pytest.mark.parametrize(
    ("name", "layout"),
    [
        ("monthly/{dir}/BTCUSDT/1h/BTCUSDT-1h-2021-11.zip", "no header, ms"),
        ("monthly/{dir}/BTCUSDT/5m/BTCUSDT-5m-2022-01.zip", "header, ms"),
        ("daily/{dir}/BTCUSDT/5m/BTCUSDT-5m-2025-03-02.zip", "header, us"),
    ],
)
def test_price_block_equals_the_model_path_for_every_file_layout(
    emu: Emulator, price: Price, name: str, layout: str
) -> None:
    path = "/" + name.format(dir=price.archive_dir)
    data = served(emu, path)
    interval = path.split("/")[4]
    assert data[:1].isdigit() == (layout == "no header, ms")
    kind = PRICE_KINDS[price]
    block = parse_block(data, "BTCUSDT", timeframes.parse(interval), 0, 2**62, kind)
    want = price_models(data, price, "BTCUSDT", interval)
    assert block.kind is kind and block.table == kind.table(timeframes.parse(interval))
    assert block.columns.column_names == [c.name for c in kind.entry.columns[1:]]  # the catalog's, no volumes
    assert len(block) == len(want) > 0 and block.to_models() == want
    assert all(type(m) is PRICE_MODELS[price] for m in block.to_models()[:3])
    assert block.columns.schema.field("open").type == "string"  # the exchange's text, never a float
    assert block.csv_bytes().count(b"\n") == len(want)


P1 = "1735689600000,-0.00012000,0.00010000,-0.00020000,0.00001000,0,1735689899999,0,12,0,0,0"
P2 = "1735689900000,0.00001000,0.00003000,-0.00001000,0.00002000,0,1735690199999,0,12,0,0,0"


def test_price_blocks_keep_the_signed_premium_and_refuse_what_the_model_refuses() -> None:
    data = f"{HEADER}\n{P2}\n{P1}\n".encode()
    premium = parse_block(data, "XUSDT", M5, 0, 2**62, DataKind.PREMIUM_KLINES)
    assert premium.sql_rows()[0] == ("XUSDT", 1735689600000, 1735689899999, "-0.00012000", "0.00010000",
                                     "-0.00020000", "0.00001000", 12)  # fmt: skip
    assert premium.to_models() == price_models(data, Price.PREMIUM, "XUSDT", "5m")
    with pytest.raises(ValidationError, match=r"^MarkKline rejected \(XUSDT at 2025-01-01T00:00:00.000Z\): negative"):
        parse_block(data, "XUSDT", M5, 0, 2**62, DataKind.MARK_KLINES)  # a mark price is positive
    with pytest.raises(ValidationError, match="negative price"):
        price_models(data, Price.MARK, "XUSDT", "5m")  # the model says the same
    bad = [
        (P1.replace(",12,", ",-1,"), r"PremiumKline rejected \(XUSDT at 2025-01-01T00:00:00.000Z\): negative sample"),
        (P1.replace("0.00010000", "-0.00030000"), r"high below open/close/low"),
        (P1.replace("1735689899999", "1735689899000"), r"close_time != open_time \+ interval - 1 ms"),
        (P1.replace("-0.00012000", "1e-30"), r"open is not an exact decimal"),
    ]
    for row, message in bad:
        kind = DataKind.PREMIUM_KLINES
        with pytest.raises(ValidationError, match=message):
            parse_block(f"{row}\n{P2}\n".encode(), "XUSDT", M5, 0, 2**62, kind)
    positive = P2.replace("-0.00001000", "0.00000500")  # volume fields "0" (ignore): no rule applies to them
    index = parse_block(f"{positive}\n".encode(), "XUSDT", M5, 0, 2**62, DataKind.INDEX_KLINES)
    assert index.to_models() == price_models(f"{positive}\n".encode(), Price.INDEX, "XUSDT", "5m")


def test_a_block_goes_only_into_its_own_series_table() -> None:
    block = parse_block(f"{HEADER}\n{P1}\n{P2}\n".encode(), "XUSDT", M5, 0, 2**62, DataKind.PREMIUM_KLINES)
    with pytest.raises(InputError, match="holds Kline rows, got a block of PremiumKline"):
        check_block(Dataset(DataKind.KLINES, M5), block)
    with pytest.raises(InputError, match="holds MarkKline rows"):
        check_block(Dataset(DataKind.MARK_KLINES, M5), block)
    check_block(Dataset(DataKind.PREMIUM_KLINES, M5), block)
    with pytest.raises(InputError, match="not a kline series"):
        parse_block(b"", "XUSDT", M5, 0, 2**62, DataKind.FUNDING)


@pytest.mark.parametrize("price", PRICED)
def test_the_columnar_archive_run_yields_blocks_of_the_series(emu: Emulator, price: Price) -> None:
    """``columnar=True`` now serves the price klines too: whole files as blocks, equal to REST's candles."""
    s, e = ms("2025-01-30"), ms("2025-03-03")  # daily files, a monthly file (us), daily files
    it = archive.iter_klines(
        None, "BTCUSDT", M5, s, e, source="archive", now_ms=NOW, base_url=emu.archive_url, columnar=True, price=price
    )
    blocks = list(it)
    assert blocks and all(isinstance(b, KlineBlock) and b.kind is PRICE_KINDS[price] for b in blocks)
    got = [m for b in blocks for m in b.to_models()]
    rows = DS.price_rows(emu, price.value, "BTCUSDT", "5m", s, e - 1)
    assert got == [PRICE_MODELS[price].from_rest(price.subject("BTCUSDT"), "5m", r) for r in rows]


def test_joined_blocks_keep_their_series() -> None:
    """The pipeline joins consecutive files into one load (KlineBlock.concat): the join is still a block of the
    same series, so it goes into its own table; blocks of two series are never joined."""
    first = parse_block(f"{HEADER}\n{P1}\n".encode(), "XUSDT", M5, 0, 2**62, DataKind.PREMIUM_KLINES)
    second = parse_block(f"{HEADER}\n{P2}\n".encode(), "XUSDT", M5, 0, 2**62, DataKind.PREMIUM_KLINES)
    joined = KlineBlock.concat([first, second])
    assert joined.kind is DataKind.PREMIUM_KLINES and len(joined) == 2
    check_block(Dataset(DataKind.PREMIUM_KLINES, M5), joined)
    trade = parse_block(f"{HEADER}\n{ROW1}\n".encode(), "XUSDT", M5, 0, 2**62)
    with pytest.raises(ValueError, match="one series"):
        KlineBlock.concat([trade, second])


def test_csv_rendered_ahead_is_the_csv_of_the_block_and_of_joins(tmp_path: Any) -> None:
    """The pipeline renders each file's CSV before the writer takes it (``rendered``): the same bytes the loaders
    would write, and a join of rendered files carries the CSV of the joined block."""
    first = parse_block(f"{HEADER}\n{ROW1}\n".encode(), "XUSDT", M5, 0, 2**62)
    second = parse_block(f"{ROW2}\n".encode(), "XUSDT", M5, 0, 2**62)
    plain = KlineBlock.concat([first, second]).csv_bytes()
    assert plain == (
        b"XUSDT,2025-01-01 00:00:00.000,2025-01-01 00:04:59.999,1.5000,1.6,1.4,1.55,10,15.5,3,5,7.75\n"
        b"XUSDT,2025-01-01 00:05:00.000,2025-01-01 00:09:59.999,1.55,1.6,1.5,1.5,2,3.1,1,1,1.55\n"
    )
    ready = [first.rendered(), second.rendered()]
    assert [b.csv for b in ready] == [first.csv_bytes(), second.csv_bytes()] and first.csv is None
    assert ready[0] == first  # the same candles: the rendered text is no part of a block's identity
    joined = KlineBlock.concat(ready)
    assert joined.csv == plain and joined.csv_bytes() == plain
    assert KlineBlock.concat([ready[0], second]).csv is None  # a part not rendered: rendered at load time
    path = tmp_path / "load.csv"
    with path.open("wb") as fh:
        joined.write_csv(fh)
    assert path.read_bytes() == plain
