"""The library's one "now" (binance_extractor.clock), pinned in-process and, with faketime, in a real CLI process.

The subprocess tests are the end-to-end proof that nothing in the CLI path reads another clock: the child's wall
clock is frozen at each instant and the emulator is pinned to the same instant; what lands is exactly what was
closed (klines) or settled (funding) at that instant, whatever the date and hour the suite runs at.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from binance_extractor import clock, pipeline, timeframes
from binance_extractor.clock import FixedClock
from binance_extractor.exchange_clock import DEFAULT_MARGIN_MS
from binance_extractor.kinds import DataKind
from binance_extractor.timeutil import dt_to_ms, iso, ms_to_dt, now_ms, parse_time
from tests.fixtures.clock import INSTANTS, at_instants, faketime_argv, faketime_env, instant_ms, whole_seconds

ROOT = Path(__file__).resolve().parents[2]
DAY = 86_400_000
HOUR = 3_600_000
SUBPROCESS_INSTANTS = ["00:00:30", "01:59:59", "02:00:01", "23:59:59", "month-end", "leap-day", "2026-12-15"]


def test_fixed_clock_is_the_librarys_now_inside_using_only() -> None:
    fixed = FixedClock(instant_ms("leap-day"))
    with clock.using(fixed):
        assert now_ms() == clock.now_ms() == fixed() == instant_ms("leap-day")
        assert clock.now() == parse_time(INSTANTS["leap-day"])
        fixed.advance(1500)
        assert now_ms() == instant_ms("leap-day") + 1500
    assert isinstance(clock.current(), clock.SystemClock)


@at_instants
def test_frozen_clock_pins_library_and_emulator_together(frozen_clock: FixedClock, emulator) -> None:
    assert clock.now_ms() == emulator.now_ms() == frozen_clock.now_ms()
    new = emulator.symbols["NEWUSDT"].onboard_ms  # "listed 10 days ago, 08:00 UTC" of the pinned instant
    assert new == frozen_clock.now_ms() - frozen_clock.now_ms() % DAY - 10 * DAY + 8 * HOUR
    frozen_clock.advance(DAY)
    assert emulator.now_ms() == clock.now_ms() == frozen_clock.now_ms()


@at_instants
def test_default_end_is_the_pinned_now(frozen_clock: FixedClock) -> None:
    job = pipeline.Job(
        kind=DataKind.KLINES,
        symbol="BTCUSDT",
        timeframe=timeframes.parse("1h"),
        start=ms_to_dt(frozen_clock.now_ms() - DAY),
    )
    start, end = pipeline.plan_range(job, [], None)
    assert dt_to_ms(end) == frozen_clock.now_ms() and dt_to_ms(start) == frozen_clock.now_ms() - DAY


def run_cli_at(instant: str, *args: str) -> list[dict]:
    cli = [sys.executable, "-m", "binance_extractor", *args, "--sink", "jsonl", "--output", "-"]
    argv = faketime_argv(instant, cli)
    out = subprocess.run(argv, cwd=ROOT, env=faketime_env(os.environ), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


@pytest.mark.parametrize("instant", SUBPROCESS_INSTANTS)
def test_cli_at_any_instant_writes_exactly_the_closed_candles_and_settled_funding(instant: str, make_emulator) -> None:
    now = whole_seconds(instant_ms(instant))
    emu = make_emulator(clock=FixedClock(now))
    d1 = timeframes.parse("1d")

    start = iso(ms_to_dt(now - 5 * DAY))
    rows = run_cli_at(instant, "klines", "--interval", "1d", "--symbols", "BTCUSDT", "--start", start, "--source=rest")
    opens = [dt_to_ms(parse_time(r["open_time"])) for r in rows]
    assert opens == list(range(d1.ceil_ms(now - 5 * DAY), d1.floor_ms(now), DAY))  # today's forming day excluded
    assert all(dt_to_ms(parse_time(r["close_time"])) < now for r in rows)
    want = emu.klines_rows("BTCUSDT", "1d", opens[0], opens[-1])
    assert [(r["open"], r["close"]) for r in rows] == [(w[1], w[4]) for w in want]

    funding = run_cli_at(instant, "funding", "--symbols", "BTCUSDT", "--start", iso(ms_to_dt(now - DAY)))
    times = [dt_to_ms(parse_time(r["funding_time"])) for r in funding]
    closed = now - DEFAULT_MARGIN_MS  # the one closed bound (exchange_clock.closed_before): funding stops there too
    assert times == [r["fundingTime"] for r in emu.funding_rows("BTCUSDT", now - DAY, closed, limit=1000)]
    assert len(times) in (23, 24) and all(t <= closed for t in times)  # hourly funding: the last 24 h up to then
