"""The tail against the emulator's real WebSocket and REST servers, with the clock driven by the test."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

from binance_extractor.clock import FixedClock
from tests.binance_extractor.stream.harness import T0, rest, running_tail, stored, wait_until
from tests.emulator import Emulator
from tests.emulator import data as D

MIN = 60_000


def _advance(fc: FixedClock, emu: Emulator, run: Any, ms: int, closes: int) -> None:
    """Move the market's clock; wait until the stream sent the closes and the tail wrote them."""
    queued = run.stats.candles_queued
    fc.advance(ms)
    wait_until(lambda: run.stats.candles_queued >= queued + closes, f"{closes} closing events received")
    wait_until(run.idle, "the writer")


@pytest.mark.parametrize("sink_name", ["sqlite", "mysql", "mongo"])
def test_stored_candles_equal_rest(
    request: pytest.FixtureRequest, sink_name: str, emu: Emulator, fixed_clock: FixedClock
) -> None:
    request.getfixturevalue(f"{sink_name}_conn_id")
    symbols, intervals = ["BTCUSDT", "1000PEPEUSDT"], ["1m", "5m"]
    with running_tail(emu, symbols, intervals, sink_names=[sink_name], streams_per_connection=3) as run:
        assert [len(g) for g in run.tail.groups] == [3, 1] and emu.stream.active == 2  # several connections
        start_fill = run.stats.fill_rows
        assert start_fill > 0  # the start-up fill stored the last day from REST
        for _ in range(10):  # ten minutes, one at a time: 10 x 1m and 2 x 5m closes per symbol
            _advance(fixed_clock, emu, run, MIN, closes=2)
        stats = run.stop()
    assert emu.stream.client_messages == 0  # far inside the 10 messages/s limit: the streams are in the URL
    assert emu.count_429 == 0 and emu.count_418 == 0  # the fills stayed inside the weight budget
    assert stats.candles_stored == 2 * (10 + 2)  # every close came from the stream ...
    assert stats.fill_rows == start_fill  # ... none from REST after start-up
    assert stats.lag_percentile(0.99) is not None
    end = fixed_clock.now_ms()
    for sym in symbols:
        for iv in intervals:
            got = stored(sink_name, sym, iv, end - D.DAY, end)
            assert got == rest(emu, sym, iv, end - D.DAY, end)  # exact: every Decimal, every timestamp
            step = D.INTERVAL_MS[iv]
            assert [k.open_time for k in got] == sorted({k.open_time for k in got})
            assert int(got[-1].open_time.timestamp() * 1000) == D.floor_open(iv, end) - step  # newest closed


def test_no_gap_across_forced_disconnect(sqlite_conn_id: str, emu: Emulator, fixed_clock: FixedClock) -> None:
    sym, iv = "ETHUSDT", "1m"
    with running_tail(emu, [sym], [iv]) as run:
        _advance(fixed_clock, emu, run, MIN, closes=1)
        emu.stream.refuse = True  # the exchange is unreachable for a while ...
        assert emu.stream.drop_all() == 1
        wait_until(lambda: run.stats.reconnects >= 2, "failed reconnects")
        fixed_clock.advance(7 * MIN)  # ... while seven candles close
        fills = run.stats.fills
        emu.stream.refuse = False
        wait_until(lambda: run.stats.fills > fills and run.idle(), "the fill after reconnecting")
        assert run.stats.fill_rows >= 7
        _advance(fixed_clock, emu, run, MIN, closes=1)
        stats = run.stop()
    assert stats.reconnects >= 2
    end = fixed_clock.now_ms()
    got = stored("sqlite", sym, iv, T0 - 60 * MIN, end)
    assert got == rest(emu, sym, iv, T0 - 60 * MIN, end)
    assert len(got) == _slots(iv, T0 - 60 * MIN, end) == 68  # 59 before T0, then nine minutes with no hole


def test_24h_cut_reconnects_and_fills(sqlite_conn_id: str, emu: Emulator, fixed_clock: FixedClock) -> None:
    sym, iv = "SOLUSDT", "1h"
    with running_tail(emu, [sym], [iv]) as run:
        fills = run.stats.fills
        fixed_clock.advance(D.DAY + 30 * MIN)  # the connection reaches the exchange's 24 h lifetime
        wait_until(lambda: emu.stream.cuts["lifetime"] == 1, "the 24 h cut")
        wait_until(lambda: run.stats.fills > fills and run.idle(), "the reconnect and its fill")
        stats = run.stop()
    end = fixed_clock.now_ms()
    got = stored("sqlite", sym, iv, end - 2 * D.DAY, end)
    assert got == rest(emu, sym, iv, end - 2 * D.DAY, end)
    assert len(got) == _slots(iv, end - 2 * D.DAY, end) == 47
    assert stats.reconnects >= 1


def _slots(iv: str, start: int, end: int) -> int:
    """Closed candles opening in [start, end): what a gapless table holds."""
    return (D.floor_open(iv, end) - D.ceil_open(iv, start)) // D.INTERVAL_MS[iv]


class SlowSink:
    """A real sink whose writes take ``delay`` seconds: a database that cannot keep up."""

    def __init__(self, sink: Any, delay: float) -> None:
        self._sink, self._delay = sink, delay
        self.name = sink.name
        self.writes = 0

    def write(self, dataset: Any, rows: Any) -> int:
        time.sleep(self._delay)
        self.writes += 1
        return int(self._sink.write(dataset, rows))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sink, name)


def test_slow_database_applies_backpressure_with_bounded_memory(
    sqlite_conn_id: str, emu: Emulator, fixed_clock: FixedClock, caplog: pytest.LogCaptureFixture
) -> None:
    symbols = ["BTCUSDT", "ETHUSDT", "BNBUSDT"]
    slow: list[SlowSink] = []

    def wrap(sinks: list[Any]) -> list[Any]:
        slow.extend(SlowSink(s, 0.05) for s in sinks)
        return list(slow)

    emu.stream.slow_reader_seconds = 600  # the exchange waits: this test is about our own bound
    with (
        caplog.at_level(logging.WARNING, logger="binance_extractor.stream.tail"),
        running_tail(emu, symbols, ["1m"], wrap=wrap, queue_size=4, batch_size=2) as run,
    ):
        _advance(fixed_clock, emu, run, 40 * MIN, closes=3 * 40)  # 120 candles close at once
        stats = run.stop()
    assert stats.max_queue <= 4  # the bound held ...
    assert stats.backpressure_waits > 0  # ... because the readers waited for the writer
    assert any("backpressure" in r.getMessage() for r in caplog.records)  # and it was logged
    assert stats.candles_stored == 120  # nothing dropped
    end = fixed_clock.now_ms()
    for sym in symbols:
        assert stored("sqlite", sym, "1m", end - 41 * MIN, end) == rest(emu, sym, "1m", end - 41 * MIN, end)


def test_stop_flushes_queued_candles(sqlite_conn_id: str, emu: Emulator, fixed_clock: FixedClock) -> None:
    slow: list[SlowSink] = []

    def wrap(sinks: list[Any]) -> list[Any]:
        slow.extend(SlowSink(s, 0.2) for s in sinks)
        return list(slow)

    with running_tail(emu, ["BTCUSDT"], ["1m"], wrap=wrap, queue_size=50, batch_size=1) as run:
        fixed_clock.advance(10 * MIN)
        wait_until(lambda: run.stats.candles_queued >= 10, "queued candles")
        assert run.stats.candles_stored < 5
        stats = run.stop()  # while most are still queued
    assert stats.candles_stored == 10
    end = fixed_clock.now_ms()
    assert len(stored("sqlite", "BTCUSDT", "1m", D.floor_open("1m", T0), end)) == 10


def test_otel_metrics_lag_reconnects_messages(sqlite_conn_id: str, emu: Emulator, fixed_clock: FixedClock) -> None:
    from binance_extractor import telemetry

    with telemetry.capture() as cap, running_tail(emu, ["BTCUSDT"], ["1m", "5m"], report_every_s=0.05) as run:
        assert emu.stream.drop_all() == 1
        wait_until(lambda: run.stats.reconnects == 1 and run.stats.fills == 2 and run.idle(), "the reconnect")
        _advance(fixed_clock, emu, run, 5 * MIN, closes=6)
        wait_until(lambda: cap.points("binance.stream.messages.rate"), "the messages/s gauge")
        stats = run.stop()
        lags = cap.points("binance.stream.lag")  # one histogram point per timeframe
        assert {p.attributes["timeframe"] for p in lags} == {"1m", "5m"}
        assert sum(p.count for p in lags) == stats.candles_stored == 6  # one record per stored candle
        assert cap.value("binance.stream.reconnects") == stats.reconnects == 1
        assert cap.value("binance.stream.messages") == stats.messages > 0


def test_impossible_candle_on_the_stream_is_never_written(
    sqlite_conn_id: str, emu: Emulator, fixed_clock: FixedClock
) -> None:
    sym, iv = "ETHUSDT", "1m"
    bad_open = D.floor_open(iv, T0)  # the live candle, closing at the next advance
    good = emu.query_klines(sym, iv, bad_open - MIN, bad_open - MIN, 1)[0]
    row = [bad_open, *good[1:6], bad_open + MIN - 1, *good[7:]]
    row[2] = "0.01"  # high below open: impossible
    with running_tail(emu, [sym], [iv]) as run:
        emu.set_kline_override(sym, iv, bad_open, row)
        fixed_clock.advance(MIN)
        wait_until(lambda: run.stats.rejected == 1, "the rejected closing event")
        wait_until(lambda: run.stats.fill_failures >= 1, "the REST fill of the rejected candle (REST serves it too)")
        assert stored("sqlite", sym, iv, bad_open, bad_open + MIN) == []  # nothing half-written
        _advance(fixed_clock, emu, run, MIN, closes=1)  # a newer candle is stored meanwhile ...
        emu.set_kline_override(sym, iv, bad_open, None)  # ... then the exchange corrects the bad one
        wait_until(lambda: len(stored("sqlite", sym, iv, bad_open, bad_open + MIN)) == 1, "the retried fill")
        stats = run.stop()
    assert stats.rejected == 1
    end = fixed_clock.now_ms()
    got = stored("sqlite", sym, iv, bad_open, end)
    assert got == rest(emu, sym, iv, bad_open, end) and len(got) == 2  # the hole behind the newer candle is filled


def test_rotates_before_the_24h_cut_without_gaps(sqlite_conn_id: str, emu: Emulator, fixed_clock: FixedClock) -> None:
    sym, iv = "DOTUSDT", "1m"
    with running_tail(emu, [sym], [iv], rotate_after_s=0.3) as run:  # stands in for 23 h 45 min
        for _ in range(3):
            connections = run.stats.connections
            wait_until(lambda c=connections: run.stats.connections > c, "a rotation")  # type: ignore[misc]
            fixed_clock.advance(MIN)
        end = fixed_clock.now_ms()
        start = D.floor_open(iv, T0) - 10 * MIN
        wait_until(lambda: len(stored("sqlite", sym, iv, start, end)) == 13, "every candle, by stream or fill")
        stats = run.stop()
    assert emu.stream.cuts["lifetime"] == 0  # the tail left before the exchange cut it
    assert stored("sqlite", sym, iv, start, end) == rest(emu, sym, iv, start, end)
    assert len(stored("sqlite", sym, iv, start, end)) == _slots(iv, start, end) == 13
    assert stats.reconnects >= 3


def test_half_open_connection_is_detected_by_ping_timeout(
    sqlite_conn_id: str, emu: Emulator, fixed_clock: FixedClock
) -> None:
    sym, iv = "LINKUSDT", "1m"
    with running_tail(emu, [sym], [iv], ping_interval_s=0.1, ping_timeout_s=0.3) as run:
        assert emu.stream.freeze() == 1  # the peer goes silent without closing anything
        fixed_clock.advance(3 * MIN)  # three candles close that the frozen connection never sends
        wait_until(lambda: run.stats.reconnects >= 1, "the ping timeout")
        end = fixed_clock.now_ms()
        start = D.floor_open(iv, T0) - 5 * MIN
        wait_until(lambda: len(stored("sqlite", sym, iv, start, end)) == 8, "the fill after reconnecting")
        stats = run.stop()
    assert stored("sqlite", sym, iv, start, end) == rest(emu, sym, iv, start, end)
    assert stats.connections == 2


@pytest.mark.parametrize("sink_name", ["sqlite", "mysql"])
def test_two_tails_at_once_store_each_candle_once(
    request: pytest.FixtureRequest, sink_name: str, emu: Emulator, fixed_clock: FixedClock
) -> None:
    """The README's single-replica rule says a second tail only doubles the REST fill weight and never corrupts
    data: two tails on one store, both filling at start-up and both writing every close, leave exactly REST's
    candles, each once, inside the shared weight budget."""
    request.getfixturevalue(f"{sink_name}_conn_id")
    symbols, intervals = ["BTCUSDT", "ETHUSDT"], ["1m", "5m"]
    with (
        running_tail(emu, symbols, intervals, sink_names=[sink_name]) as first,
        running_tail(emu, symbols, intervals, sink_names=[sink_name]) as second,
    ):
        assert emu.stream.active == 2 and first.stats.fill_rows > 0 and second.stats.fill_rows > 0
        for _ in range(10):  # ten minutes: 10 x 1m and 2 x 5m closes per symbol, sent to both tails
            before = (first.stats.candles_queued, second.stats.candles_queued)
            fixed_clock.advance(MIN)
            wait_until(
                lambda b=before: first.stats.candles_queued >= b[0] + 2 and second.stats.candles_queued >= b[1] + 2,
                "both tails received the closes",
            )
            wait_until(lambda: first.idle() and second.idle(), "both writers")
        stats = [second.stop(), first.stop()]
    assert [s.candles_stored for s in stats] == [2 * (10 + 2)] * 2  # each tail wrote every close itself
    assert emu.count_429 == 0 and emu.count_418 == 0  # two fills at once stayed inside the shared budget
    end = fixed_clock.now_ms()
    for sym in symbols:
        for iv in intervals:
            got = stored(sink_name, sym, iv, end - D.DAY, end)
            assert got == rest(emu, sym, iv, end - D.DAY, end)  # exact, and each candle once
            assert len({k.open_time for k in got}) == len(got)
