"""A tail with no seam (``stream/seam.py``), against the emulator's real WebSocket and REST servers.

The market's clock is pinned and moved by the test (never a sleep for correctness): connections are dropped and
refused while candles close, a reconnect lands 0, 0.3, 1 or 2 s after a close, another reconnect happens while the
first one's REST fill is held in flight by the emulator, and the store (MariaDB behind a loopback proxy the test
owns) goes down during a fill. Every time the store ends up with exactly REST's candles, each once.
"""

from __future__ import annotations

from typing import Any

import pytest

from binance_extractor import cli
from binance_extractor.clock import FixedClock
from binance_extractor.timeutil import iso, ms_to_dt
from tests.binance_extractor.stream.harness import T0, rest, running_tail, stored, wait_until
from tests.emulator import Emulator
from tests.emulator import data as D

MIN = 60_000
SYM, IV = "ETHUSDT", "1m"
CLOSE = D.floor_open(IV, T0) + MIN  # the first close after T0 (T0 is mid-minute)
SINCE = D.floor_open(IV, T0) - 10 * MIN


def away(emu: Emulator, run: Any) -> None:
    """Cut the tail off the exchange: the connection drops and reconnects are refused until ``emu.stream.refuse``
    is cleared."""
    emu.stream.refuse = True
    reconnects = run.stats.reconnects
    assert emu.stream.drop_all() == 1
    wait_until(lambda: run.stats.reconnects >= reconnects + 2, "refused reconnects")


def every_candle(emu: Emulator, fc: FixedClock, sink: str = "sqlite", since: int = SINCE) -> None:
    """Wait until the store holds every closed candle since ``since`` (the hang guard is the only timeout)."""
    end = D.floor_open(IV, fc.now_ms())
    want = (end - since) // MIN
    wait_until(lambda: len(stored(sink, SYM, IV, since, end)) == want, f"the {want} closed candles", timeout=30)
    assert stored(sink, SYM, IV, since, end) == rest(emu, SYM, IV, since, end)  # exact, each once


@pytest.mark.parametrize("after_ms", [0, 300, 1_000, 2_000], ids=lambda a: f"{a / 1000:g}s-after-a-close")
def test_a_reconnect_just_after_a_close_loses_no_candle(
    sqlite_conn_id: str, emu: Emulator, fixed_clock: FixedClock, after_ms: int
) -> None:
    """The new socket never sends the candle that closed just before it opened, and the reconnect fill (closed
    bound: the exchange's clock minus a 1 s margin) could not take it yet: it used to be on neither path."""
    with running_tail(emu, [SYM], [IV]) as run:
        away(emu, run)
        fixed_clock.set(CLOSE + after_ms)  # the candle [CLOSE - 1 min, CLOSE) closed while the tail was away
        fills = run.stats.fills
        emu.stream.refuse = False
        wait_until(lambda: run.stats.fills > fills and run.idle(), "the reconnect and its fill")
        fixed_clock.advance(MIN)  # the first close on the new socket
        every_candle(emu, fixed_clock)
        stats = run.stop()
    assert stats.connections == 2 and emu.count_429 == 0 and emu.count_418 == 0


def test_a_reconnect_during_a_fill_loses_no_candle(sqlite_conn_id: str, emu: Emulator, fixed_clock: FixedClock) -> None:
    with running_tail(emu, [SYM], [IV]) as run:
        away(emu, run)
        fixed_clock.advance(3 * MIN)  # three candles close while the tail is away
        gate = emu.hold("/fapi/v1/klines")
        emu.stream.refuse = False
        assert gate.arrived.wait(30)  # the reconnect fill is in flight, its answer held by the exchange ...
        connections = run.stats.connections
        away(emu, run)  # ... while the connection drops again
        fixed_clock.advance(2 * MIN + 300)  # and two more candles close (the last one 0.3 s ago)
        emu.stream.refuse = False
        wait_until(lambda: run.stats.connections > connections, "the second reconnect")
        gate.release()
        fixed_clock.advance(MIN)
        every_candle(emu, fixed_clock)
        stats = run.stop()
    assert stats.connections == 3 and gate.held >= 1


@pytest.mark.mysql
@pytest.mark.parametrize("when", ["during-a-reconnect-fill", "at-start-up"])
def test_the_store_down_during_a_fill_loses_no_candle(
    mysql_proxy_conn_id: tuple[str, Any],
    emu: Emulator,
    fixed_clock: FixedClock,
    monkeypatch: pytest.MonkeyPatch,
    when: str,
) -> None:
    """A fill that failed while planning (the store down for a moment) was retried without its start: by then the
    socket had stored a newer candle, and the retry began after it, losing every candle closed while away."""
    _, proxy = mysql_proxy_conn_id
    monkeypatch.setenv("BINANCE_EXTRACTOR_DB_RETRY_ATTEMPTS", "1")  # a refused connection fails at once
    since = SINCE
    wrap = None
    if when == "at-start-up":  # a restart: an hour of candles is missing, and the store goes down once opened
        since = D.floor_open(IV, T0) - 2 * 60 * MIN
        span = ["--start", iso(ms_to_dt(since)), "--end", iso(ms_to_dt(since + 60 * MIN))]
        cli.execute(["klines", "--interval", IV, "--symbols", SYM, "--source", "rest", *span, "--sink", "mysql"])

        def wrap(sinks: list[Any]) -> list[Any]:
            proxy.cut()
            return sinks

    with running_tail(emu, [SYM], [IV], sink_names=["mysql"], wrap=wrap) as run:
        if when == "during-a-reconnect-fill":
            away(emu, run)
            fixed_clock.advance(5 * MIN)  # five candles close while the tail is away
            proxy.cut()  # the store goes down
            failures = run.stats.fill_failures
            emu.stream.refuse = False
            wait_until(lambda: run.stats.fill_failures > failures, "the reconnect fill failing")
        else:
            assert run.stats.fill_failures >= 1  # the start-up fill could not even read where to start
        write_failures = run.stats.write_failures
        fixed_clock.advance(MIN)  # the socket brings a newer candle: its write fails and is held, retried
        wait_until(lambda: run.stats.write_failures > write_failures, "the held write")
        proxy.start()  # the store is back
        every_candle(emu, fixed_clock, "mysql", since)
        stats = run.stop()
    assert stats.fill_failures >= 1 and emu.count_418 == 0
