"""Pagination against the real loopback emulator: every closed candle exactly once, nothing invented."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime

import pytest

from binance_extractor import timeframes
from binance_extractor.client import BinanceFuturesClient
from binance_extractor.extract import iter_agg_trades, iter_funding, iter_historical_trades, iter_klines
from binance_extractor.models import Kline
from binance_extractor.timeutil import dt_to_ms, ms_to_dt
from tests.emulator.data import FIXTURES
from tests.fixtures.clock import at_instants

DAY = 86_400_000


def client_for(emu, **kw) -> BinanceFuturesClient:
    return BinanceFuturesClient(emu.url, "test-key", backoff_initial=0.05, **kw)


def flat(batches) -> list:
    return [row for batch in batches for row in batch]


def expected(emu, symbol, interval, start, end) -> list[Kline]:
    return [Kline.from_rest(symbol, interval, r) for r in emu.klines_rows(symbol, interval, start, end - 1)]


@pytest.mark.parametrize(
    ("interval", "days", "page"),
    [("5m", 5, 499), ("15m", 12, 499), ("1h", 45, 499), ("4h", 200, 499), ("1d", 1200, 499), ("1w", 1500, 50)],
)
def test_multi_page_range_equals_source_exactly_once(emulator, interval, days, page):
    client = client_for(emulator)
    end = dt_to_ms(datetime(2025, 6, 1, 7, 3, tzinfo=UTC))  # not aligned: range ends mid-candle
    start = end - days * DAY + 12_345
    got = flat(iter_klines(client, "BTCUSDT", timeframes.parse(interval), start, end, page=page))
    want = expected(emulator, "BTCUSDT", interval, timeframes.parse(interval).ceil_ms(start), end)
    assert len(want) > 2 * page  # several pages
    assert got == want
    assert len({k.open_time for k in got}) == len(got)
    assert all(start <= dt_to_ms(k.open_time) < end for k in got)


def test_monthly_interval_pages_by_calendar_month(emulator):
    client = client_for(emulator)
    got = flat(iter_klines(client, "BTCUSDT", timeframes.parse("1M"), 0, dt_to_ms(datetime(2025, 1, 1, tzinfo=UTC))))
    assert [k.open_time.day for k in got] == [1] * len(got)
    assert got[0].open_time == datetime(2019, 9, 1, tzinfo=UTC)  # the listing month's candle opens on the 1st
    assert got == expected(emulator, "BTCUSDT", "1M", 0, dt_to_ms(datetime(2025, 1, 1, tzinfo=UTC)))
    assert got[-1].open_time == datetime(2024, 12, 1, tzinfo=UTC)


def test_real_xrpusdt_candles_round_trip_exactly(emulator):
    raw = json.loads((FIXTURES / "XRPUSDT-5m-ohlcv.json").read_text())
    client = client_for(emulator)
    got = flat(iter_klines(client, "XRPUSDT", timeframes.parse("5m"), raw[0][0], raw[-1][0] + 300_000))
    assert len(got) == len(raw) == 1999
    for k, r in zip(got, raw, strict=True):
        assert (dt_to_ms(k.open_time), str(k.open), str(k.high), str(k.low), str(k.close), str(k.volume)) == (
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            r[5],
        )


@at_instants
@pytest.mark.parametrize("interval", ["5m", "1h", "1d"])
def test_in_progress_candle_is_never_emitted(frozen_clock, emulator, interval):
    """At every pinned instant (shared by the library and the exchange): up to the last closed candle, no more."""
    client = client_for(emulator)
    tf = timeframes.parse(interval)
    now = frozen_clock.now_ms()
    assert emulator.now_ms() == now
    got = flat(iter_klines(client, "ETHUSDT", tf, now - 3 * DAY, now + DAY))
    live_open = tf.floor_ms(now)
    # closed on the exchange's clock (the same instant here) with the safety margin: a candle that closed less
    # than the margin ago waits for the next run
    cutoff = client.closed_before_ms()
    assert cutoff == now - client.exchange_clock.margin_ms
    last_open = tf.floor_ms(cutoff) - tf.ms
    assert got[-1].open_time < ms_to_dt(live_open)
    assert dt_to_ms(got[-1].open_time) == last_open  # up to the last closed one, nothing missing
    assert [dt_to_ms(k.open_time) for k in got] == list(range(tf.ceil_ms(now - 3 * DAY), last_open + 1, tf.ms))
    assert all(dt_to_ms(k.close_time) < cutoff for k in got)
    # the exchange does serve the live candle; it changes until it closes
    served = emulator.query_klines("ETHUSDT", interval, live_open, None, 1)
    assert served and served[0][6] >= now


def test_outage_stays_a_hole(emulator):
    tf = timeframes.parse("1h")
    start = dt_to_ms(datetime(2024, 3, 1, tzinfo=UTC))
    emulator.add_outage("SOLUSDT", start + 10 * 3_600_000, start + 14 * 3_600_000 - 1)  # inclusive bounds
    got = flat(iter_klines(client_for(emulator), "SOLUSDT", tf, start, start + 30 * 3_600_000))
    hours = [(dt_to_ms(k.open_time) - start) // 3_600_000 for k in got]
    assert hours == [h for h in range(30) if not 10 <= h < 14]


def test_funding_history_over_1000_rows_is_fully_paginated(emulator):
    client = client_for(emulator)
    start, end = dt_to_ms(datetime(2024, 1, 1, tzinfo=UTC)), dt_to_ms(datetime(2025, 11, 1, tzinfo=UTC))
    got = flat(iter_funding(client, "BTCUSDT", start, end))
    want = emulator.funding_rows("BTCUSDT", start, end - 1, limit=10**6)
    assert len(got) > 1000 and len(got) == len(want)
    assert [dt_to_ms(f.funding_time) for f in got] == [r["fundingTime"] for r in want]
    assert [format(f.funding_rate, "f") for f in got] == [r["fundingRate"] for r in want]  # exact, no exponent
    gaps = {
        dt_to_ms(b.funding_time) // 3_600_000 - dt_to_ms(a.funding_time) // 3_600_000
        for a, b in itertools.pairwise(got)
    }
    assert {8, 4, 1} <= gaps  # 8h, then 4h, then 1h contracts


def test_real_funding_keeps_millisecond_jitter(emulator):
    raw = json.loads((FIXTURES / "XRPUSDT-funding.json").read_text())
    got = flat(iter_funding(client_for(emulator), "XRPUSDT", raw[0][0], raw[-1][0] + 1))
    assert [(dt_to_ms(f.funding_time), str(f.funding_rate)) for f in got] == [(t, r) for t, r in raw]


def test_trades_keep_64_bit_ids_and_same_millisecond_groups(emulator):
    raw = json.loads((FIXTURES / "XRPETH-trades.json").read_text())
    start, end = raw[0][0], raw[-1][0] + 1
    client = client_for(emulator)
    aggs = flat(iter_agg_trades(client, "XRPETH", start, end))
    trades = flat(iter_historical_trades(client, "XRPETH", start, end))
    assert len(trades) == len(raw) == 12477
    assert [t.trade_id for t in trades] == [r[1] + 2**32 for r in raw]
    assert min(t.trade_id for t in trades) > 2**32
    by_ms: dict[int, int] = {}
    for r in raw:
        by_ms[r[0]] = by_ms.get(r[0], 0) + 1
    stored_by_ms: dict[int, int] = {}
    for t in trades:
        stored_by_ms[dt_to_ms(t.time)] = stored_by_ms.get(dt_to_ms(t.time), 0) + 1
    assert stored_by_ms == by_ms and sum(1 for n in by_ms.values() if n > 1) == 956
    # aggregate trades cover every trade id exactly once, ids continuous
    assert [a.agg_trade_id for a in aggs] == list(range(aggs[0].agg_trade_id, aggs[0].agg_trade_id + len(aggs)))
    covered = sum(a.last_trade_id - a.first_trade_id + 1 for a in aggs)
    assert covered == len(raw)
