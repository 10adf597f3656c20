"""Issue 13 regressions in pagination: hour windows, streamed pages, stuck cursors, unserved trade history."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from binance_extractor import extract, timeframes
from binance_extractor.client import BinanceFuturesClient
from binance_extractor.clock import FixedClock
from binance_extractor.extract import (
    HistoryUnavailableError,
    StuckCursorError,
    iter_agg_trades,
    iter_funding,
    iter_historical_trades,
    iter_klines,
)
from binance_extractor.timeutil import dt_to_ms

HOUR = 3_600_000
DAY = 24 * HOUR
NOW = dt_to_ms(datetime(2026, 11, 30, 12, 0, tzinfo=UTC))


def client_for(emu) -> BinanceFuturesClient:
    return BinanceFuturesClient(emu.url, "test-key", backoff_initial=0.05)


def flat(batches) -> list:
    return [row for batch in batches for row in batch]


def agg_requests(emu) -> list[dict[str, str]]:
    return [r.params for r in emu.requests if r.path == "/fapi/v1/aggTrades"]


def test_an_hour_of_agg_trades_costs_one_request_not_two(make_emulator):
    emu = make_emulator(clock=FixedClock(NOW))
    start = NOW - 2 * DAY
    got = flat(iter_agg_trades(client_for(emu), "BTCUSDT", start, start + 24 * HOUR, now_ms=NOW))
    params = agg_requests(emu)
    assert len(params) == 24  # one weight-20 request per symbol-hour (a quiet hour fits one page)
    windows = sorted((int(p["startTime"]), int(p["endTime"])) for p in params)
    assert windows == [(start + h * HOUR, start + (h + 1) * HOUR - 1) for h in range(24)]
    want = emu.agg_trades("BTCUSDT", None, start, start + 24 * HOUR - 1, 10**6)
    assert [a.agg_trade_id for a in got] == [int(r["a"]) for r in want]


def test_agg_trades_are_streamed_page_by_page_not_per_hour(make_emulator):
    emu = make_emulator(clock=FixedClock(NOW), trade_bucket_ms=1000)  # 7200 trades an hour
    start = NOW - DAY
    expected = emu.agg_trades("BTCUSDT", None, start, start + 3 * HOUR - 1, 10**6)
    pages = list(iter_agg_trades(client_for(emu), "BTCUSDT", start, start + 3 * HOUR, now_ms=NOW))
    assert max(len(p) for p in pages) <= extract.AGG_PAGE  # never a whole hour in one batch
    assert len(pages) >= 3 * 8
    ids = [a.agg_trade_id for p in pages for a in p]
    assert ids == [r["a"] for r in expected] and len(ids) == 3 * 7200


def test_ordered_stream_bounds_what_runs_ahead():
    produced: list[tuple[int, int]] = []

    def pages(item: int):
        for i in range(50):
            produced.append((item, i))
            yield (item, i)

    it = extract.ordered_stream(pages, list(range(6)), workers=3, depth=2)
    first = [next(it) for _ in range(5)]
    assert first == [(0, i) for i in range(5)]
    # items 1 and 2 run ahead but block once their 2-page buffer is full (plus the one being put)
    ahead = [p for p in produced if p[0] > 0]
    assert len(ahead) <= 2 * (2 + 1)
    rest = list(it)
    assert first + rest == [(item, i) for item in range(6) for i in range(50)]


def test_ordered_stream_propagates_the_first_error():
    def pages(item: int):
        yield item
        if item == 1:
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        list(extract.ordered_stream(pages, [0, 1, 2, 3], workers=2))


def test_agg_trades_same_page_again_fails_instead_of_looping(make_emulator):
    emu = make_emulator(clock=FixedClock(NOW), trade_bucket_ms=1000)
    client = client_for(emu)
    emu.inject("repeat_page", times=1000, path="/fapi/v1/aggTrades", after=1)
    with pytest.raises(StuckCursorError, match=r"aggTrades BTCUSDT: the exchange ignored the cursor"):
        flat(iter_agg_trades(client, "BTCUSDT", NOW - DAY, NOW - DAY + HOUR, now_ms=NOW))
    assert emu.count("/fapi/v1/aggTrades") == 2


def test_funding_cursor_ignored_fails_instead_of_looping(make_emulator):
    emu = make_emulator(clock=FixedClock(NOW))
    start, end = dt_to_ms(datetime(2024, 1, 1, tzinfo=UTC)), dt_to_ms(datetime(2025, 11, 1, tzinfo=UTC))
    emu.inject("repeat_page", times=1000, path="/fapi/v1/fundingRate", after=1)
    with pytest.raises(StuckCursorError, match="fundingRate BTCUSDT"):
        flat(iter_funding(client_for(emu), "BTCUSDT", start, end, now_ms=NOW))
    assert emu.count("/fapi/v1/fundingRate") == 2


def test_historical_trades_same_page_again_fails(make_emulator):
    emu = make_emulator(clock=FixedClock(NOW))
    emu.inject("repeat_page", times=1000, path="/fapi/v1/historicalTrades", after=1)
    with pytest.raises(StuckCursorError, match="historicalTrades BTCUSDT"):
        flat(iter_historical_trades(client_for(emu), "BTCUSDT", NOW - DAY, NOW - DAY + HOUR, now_ms=NOW))
    assert emu.count("/fapi/v1/historicalTrades") == 2


def test_historical_trades_empty_page_for_an_old_id_names_the_unserved_range(make_emulator):
    emu = make_emulator(clock=FixedClock(NOW), historical_trades_ms=90 * DAY)
    start = NOW - 120 * DAY
    with pytest.raises(HistoryUnavailableError) as err:
        flat(iter_historical_trades(client_for(emu), "BTCUSDT", start, start + HOUR, now_ms=NOW))
    message = str(err.value)
    assert "no longer serves" in message and "--kind agg" in message
    assert "2026-08-02T12:00:00" in message and "2026-08-02T13:00:00" in message  # the range asked for


def test_historical_trades_recent_range_still_works_with_a_retention_window(make_emulator):
    emu = make_emulator(clock=FixedClock(NOW), historical_trades_ms=90 * DAY)
    start = NOW - 2 * DAY
    got = flat(iter_historical_trades(client_for(emu), "BTCUSDT", start, start + HOUR, now_ms=NOW))
    assert len(got) == 720  # two trades per 10 s bucket
    assert [t.trade_id for t in got] == list(range(got[0].trade_id, got[0].trade_id + 720))


def test_klines_startTime_ignored_fails_instead_of_dropping_a_window(make_emulator):
    emu = make_emulator(clock=FixedClock(NOW))
    client = client_for(emu)
    client.max_in_flight = 1
    emu.inject("repeat_page", times=1000, path="/fapi/v1/klines", after=1)  # window 2 gets window 1's candles
    with pytest.raises(StuckCursorError, match="klines BTCUSDT"):
        flat(iter_klines(client, "BTCUSDT", timeframes.parse("1h"), NOW - 60 * DAY, NOW, now_ms=NOW))
    assert emu.count("/fapi/v1/klines") == 2
