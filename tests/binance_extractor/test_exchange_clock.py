"""Closed means closed on the exchange: its clock (offset from /fapi/v1/time), not this machine's, decides.

The emulator's market clock is skewed by +/-3 s against the library's (pinned) clock; a run just after a minute
boundary must not store the still-open 1m candle, and every candle it stores must be the final one.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from binance_extractor import archive, clock, timeframes
from binance_extractor.client import BinanceFuturesClient
from binance_extractor.clock import FixedClock
from binance_extractor.extract import iter_klines
from binance_extractor.models import Kline
from binance_extractor.timeutil import dt_to_ms

M1 = timeframes.parse("1m")
BOUNDARY = dt_to_ms(datetime(2026, 11, 30, 12, 0, tzinfo=UTC))  # a minute boundary
START = BOUNDARY - 10 * 60_000


def flat(batches) -> list[Kline]:
    return [k for b in batches for k in b]


def final_candles(emu, local: FixedClock, n: int) -> list[Kline]:
    """The candles as the exchange serves them once long closed."""
    local.set(BOUNDARY + 3_600_000)
    return [Kline.from_rest("BTCUSDT", "1m", r) for r in emu.query_klines("BTCUSDT", "1m", START, None, n)]


@pytest.mark.parametrize("path", ["extract", "archive-auto"])
def test_exchange_3s_behind_the_open_candle_is_not_stored(make_emulator, path):
    local = FixedClock(BOUNDARY + 200)  # this machine: just after the boundary
    emu = make_emulator(clock=lambda: local.now_ms() - 3000)  # the exchange: 2.8 s before it
    client = BinanceFuturesClient(emu.url, None)
    with clock.using(local):
        if path == "extract":
            got = flat(iter_klines(client, "BTCUSDT", M1, START, BOUNDARY + 60_000))
        else:  # the CLI's default source: archive for whole days, REST for today
            got = flat(archive.iter_klines(client, "BTCUSDT", M1, START, BOUNDARY + 60_000, source="auto"))
        # this machine's clock alone would take the still-open candle (the bug this guards against)
        naive = flat(iter_klines(client, "BTCUSDT", M1, START, BOUNDARY + 60_000, now_ms=local.now_ms()))
    assert client.exchange_clock.offset_ms == -3000
    assert got[-1].open_time == datetime(2026, 11, 30, 11, 58, tzinfo=UTC)  # closed at 11:58:59.999
    assert len(got) == 9
    final = final_candles(emu, local, 10)
    assert got == final[:9]
    assert naive[-1].open_time == datetime(2026, 11, 30, 11, 59, tzinfo=UTC) and naive[-1] != final[9]


def test_exchange_3s_ahead_the_just_closed_candle_is_stored(make_emulator):
    local = FixedClock(BOUNDARY - 500)  # this machine: half a second before the boundary
    emu = make_emulator(clock=lambda: local.now_ms() + 3000)  # the exchange: 2.5 s after it
    client = BinanceFuturesClient(emu.url, None)
    with clock.using(local):
        got = flat(iter_klines(client, "BTCUSDT", M1, START, BOUNDARY + 60_000))
    assert client.exchange_clock.offset_ms == 3000
    assert got[-1].open_time == datetime(2026, 11, 30, 11, 59, tzinfo=UTC)  # closed on the exchange, with margin
    assert got == final_candles(emu, local, 10)


def test_the_safety_margin_holds_back_a_candle_closed_only_just(make_emulator):
    local = FixedClock(BOUNDARY + 500)
    emu = make_emulator(clock=local)  # no skew: the candle closed 0.5 s ago, inside the 1 s margin
    client = BinanceFuturesClient(emu.url, None)
    with clock.using(local):
        got = flat(iter_klines(client, "BTCUSDT", M1, START, BOUNDARY + 60_000))
        local.set(BOUNDARY + 1_500)
        client.exchange_clock.sync()
        later = flat(iter_klines(client, "BTCUSDT", M1, START, BOUNDARY + 60_000))
    assert got[-1].open_time == datetime(2026, 11, 30, 11, 58, tzinfo=UTC)
    assert later[-1].open_time == datetime(2026, 11, 30, 11, 59, tzinfo=UTC)
