from datetime import UTC, datetime
from decimal import Decimal

import pytest

from binance_extractor.errors import ValidationError
from binance_extractor.models import AggTrade, FundingRate, Kline, Trade
from binance_extractor.timeutil import iso, ms_to_dt, parse_time

ROW = [
    1636934400000,
    "1.1893",
    "1.1954",
    "1.1891",
    "1.1941",
    "9289043.5",
    1636934699999,
    "11052632.12345678",
    4242,
    "4644521.7",
    "5526316.06",
    "0",
]


def test_kline_from_rest_is_exact_and_utc():
    k = Kline.from_rest("XRPUSDT", "5m", ROW)
    assert k.open == Decimal("1.1893") and str(k.quote_volume) == "11052632.12345678"
    assert k.open_time == datetime(2021, 11, 15, tzinfo=UTC) and k.open_time.tzinfo is not None
    assert k.close_time == datetime(2021, 11, 15, 0, 4, 59, 999000, tzinfo=UTC)
    assert k.key() == ("XRPUSDT", k.open_time)


@pytest.mark.parametrize(
    ("index", "value", "message"),
    [
        (2, "1.1000", "high"),
        (3, "1.2000", "low"),
        (5, "-1", "negative volume"),
        (6, 1636934700000, "close_time"),
        (1, 1.1893, "float"),
    ],
)
def test_impossible_klines_are_rejected_naming_symbol_and_time(index, value, message):
    row = list(ROW)
    row[index] = value
    with pytest.raises(ValidationError) as err:
        Kline.from_rest("XRPUSDT", "5m", row)
    assert "XRPUSDT at 2021-11-15T00:00:00.000Z" in str(err.value)
    assert message in str(err.value)


def test_malformed_symbol_and_row_are_rejected():
    with pytest.raises(ValidationError, match="malformed symbol"):
        Kline.from_rest("btc-usdt", "5m", ROW)
    with pytest.raises(ValidationError, match="malformed row"):
        Kline.from_rest("BTCUSDT", "5m", ROW[:5])


def test_trade_ids_are_64_bit_and_commission_optional():
    big = 2**32 + 17
    t = Trade.from_rest(
        "XRPETH",
        {
            "id": big,
            "price": "0.00141342",
            "qty": "23.0",
            "quoteQty": "0.03250866",
            "time": 1570752011620,
            "isBuyerMaker": True,
        },
    )
    assert t.trade_id == big and t.commission is None and t.price == Decimal("0.00141342")
    a = AggTrade.from_rest("XRPETH", {"a": 2**40, "p": "1.5", "q": "2", "f": big, "l": big + 3, "T": 1, "m": False})
    assert a.agg_trade_id == 2**40 and a.last_trade_id - a.first_trade_id == 3
    with pytest.raises(ValidationError):
        AggTrade.from_rest("XRPETH", {"a": 1, "p": "1", "q": "1", "f": 5, "l": 4, "T": 1, "m": False})


def test_funding_keeps_ms_jitter_and_optional_mark_price():
    f = FundingRate.from_rest(
        {"symbol": "XRPUSDT", "fundingTime": 1637193600017, "fundingRate": "0.0001", "markPrice": ""}
    )
    assert f.funding_time == ms_to_dt(1637193600017) and f.funding_time.microsecond == 17000
    assert f.mark_price is None and f.funding_rate == Decimal("0.0001")


def test_time_parsing_is_utc_and_rejects_garbage():
    assert parse_time("2024-01-31") == datetime(2024, 1, 31, tzinfo=UTC)
    assert parse_time("2024-01-31T02:00:00+02:00") == datetime(2024, 1, 31, tzinfo=UTC)
    assert iso(parse_time("1636934400123")) == "2021-11-15T00:00:00.123Z"
    with pytest.raises(ValueError, match="malformed date"):
        parse_time("31/01/2024")
