from datetime import UTC, datetime

import pytest

from binance_extractor import timeframes
from binance_extractor.errors import InputError
from binance_extractor.kinds import DataKind, Dataset
from binance_extractor.timeutil import dt_to_ms


@pytest.mark.parametrize(
    ("name", "interval", "table"),
    [
        ("m5", "5m", "klines_m5"),
        ("m15", "15m", "klines_m15"),
        ("m30", "30m", "klines_m30"),
        ("h1", "1h", "klines_h1"),
        ("d1", "1d", "klines_d1"),
    ],
)
def test_scheduled_timeframes_map_to_binance_and_tables(name, interval, table):
    for tf in (timeframes.parse(name), timeframes.parse(interval), Dataset.of_table(table).timeframe):
        assert tf is not None and (tf.name, tf.interval, DataKind.KLINES.table(tf)) == (name, interval, table)


def test_every_binance_interval_follows_the_naming_rule():
    tables = {DataKind.KLINES.table(timeframes.parse(i)) for i in timeframes.BINANCE_INTERVALS}
    assert {"klines_h4", "klines_w1", "klines_m1", "klines_mo1", "klines_d3"} <= tables
    assert len(tables) == len(timeframes.BINANCE_INTERVALS)  # no collisions (m1 vs mo1)


@pytest.mark.parametrize("bad", ["7m", "5", "", "h", "1y", "m5x"])
def test_unknown_interval_is_input_error(bad):
    with pytest.raises(InputError, match="unknown interval"):
        timeframes.parse(bad)


def test_close_time_and_month_arithmetic():
    tf = timeframes.parse("5m")
    t = dt_to_ms(datetime(2024, 1, 1, tzinfo=UTC))
    assert tf.close_ms(t) == t + 300_000 - 1
    month = timeframes.parse("1M")
    jan = dt_to_ms(datetime(2024, 1, 1, tzinfo=UTC))
    feb = dt_to_ms(datetime(2024, 2, 1, tzinfo=UTC))
    assert month.next_open_ms(jan) == feb
    assert month.close_ms(dt_to_ms(datetime(2024, 12, 1, tzinfo=UTC))) == dt_to_ms(datetime(2025, 1, 1, tzinfo=UTC)) - 1
    assert month.floor_ms(dt_to_ms(datetime(2024, 2, 15, 3, tzinfo=UTC))) == feb


def test_weeks_open_on_monday_and_counts():
    week = timeframes.parse("1w")
    opened = week.floor_ms(dt_to_ms(datetime(2024, 1, 10, 12, tzinfo=UTC)))  # a Wednesday
    assert datetime.fromtimestamp(opened / 1000, UTC) == datetime(2024, 1, 8, tzinfo=UTC)
    m5 = timeframes.parse("m5")
    start = dt_to_ms(datetime(2024, 1, 1, tzinfo=UTC))
    assert m5.count_between(start, start + 3_600_000) == 12
    assert m5.count_between(start + 1, start + 3_600_000) == 11
    assert m5.ceil_ms(start + 1) == start + 300_000
