"""Incremental planning against the real emulator and the embedded SQLite store, with a pinned clock (issue 13)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from binance_extractor import clock, timeframes
from binance_extractor.client import BinanceFuturesClient
from binance_extractor.clock import FixedClock
from binance_extractor.kinds import DataKind, Dataset
from binance_extractor.pipeline import Job, run_job
from binance_extractor.sinks.sqlite import SqliteStore
from binance_extractor.timeutil import dt_to_ms, ms_to_dt

AGG_TRADES = Dataset.of_table("agg_trades")
FUNDING_RATES = Dataset.of_table("funding_rates")
KLINES_M5 = Dataset.of_table("klines_m5")

HOUR = 3_600_000
DAY = 24 * HOUR


@pytest.fixture
def pinned(make_emulator, sqlite_conn_id, monkeypatch):
    """(clock, emulator, sink): one fixed instant shared by the library and the exchange."""
    monkeypatch.setenv("BINANCE_EXTRACTOR_HISTORY_DAYS", "30")
    monkeypatch.setenv("BINANCE_EXTRACTOR_MAX_CATCHUP_DAYS", "7")
    monkeypatch.setenv("BINANCE_EXTRACTOR_FULL_HISTORY", "false")
    fixed = FixedClock(dt_to_ms(datetime(2026, 12, 2, 15, 7, tzinfo=UTC)))  # a Wednesday, mid-candle
    emu = make_emulator(clock=fixed)
    sink = SqliteStore(sqlite_conn_id)
    with clock.using(fixed):
        yield fixed, emu, sink
    sink.close()


def client_for(emu, **kw) -> BinanceFuturesClient:
    return BinanceFuturesClient(emu.url, "test-key", backoff_initial=0.01, **kw)


def incremental(interval: str, symbol: str = "BTCUSDT") -> Job:
    return Job(DataKind.KLINES, symbol, timeframes.parse(interval), incremental=True, source="rest")


def opens(sink: SqliteStore, interval: str, symbol: str = "BTCUSDT") -> list[datetime]:
    return [r["open_time"] for r in sink.read(Dataset.klines(timeframes.parse(interval)), symbol)]


def closed_opens(interval: str, start_ms: int, now_ms: int) -> list[datetime]:
    tf = timeframes.parse(interval)
    out, t = [], tf.ceil_ms(start_ms)
    while tf.close_ms(t) < now_ms:
        out.append(ms_to_dt(t))
        t = tf.next_open_ms(t)
    return out


@pytest.mark.parametrize("interval", ["1w", "1M"])
def test_week_and_month_incremental_runs_advance(pinned, monkeypatch, interval):
    fixed, emu, sink = pinned
    monkeypatch.setenv("BINANCE_EXTRACTOR_HISTORY_DAYS", "400")
    client = client_for(emu)
    tf = timeframes.parse(interval)
    start = fixed.now_ms() - 400 * DAY
    run_job(incremental(interval), [sink], client)
    assert opens(sink, interval) == closed_opens(interval, start, fixed.now_ms())
    for _ in range(3):  # a run two days and a bit after each candle closes stores that candle
        fixed.set(tf.next_open_ms(tf.floor_ms(fixed.now_ms())) + 2 * DAY + 3 * HOUR + 7)
        run_job(incremental(interval), [sink], client)
        assert opens(sink, interval) == closed_opens(interval, start, fixed.now_ms())


def test_interrupted_first_load_resumes_where_it_stopped(pinned):
    fixed, emu, sink = pinned
    now = fixed.now_ms()
    # the first load (30 days of h1 = two 499-candle windows) dies after its first window
    emu.inject("503", times=1000, path="/fapi/v1/klines", after=1)
    with pytest.raises(Exception, match="503"):
        run_job(incremental("1h"), [sink], client_for(emu, max_attempts=1, max_in_flight=1))
    stored = opens(sink, "1h")
    assert 0 < len(stored) < 30 * 24 - 1 and stored[-1] < ms_to_dt(now - 7 * DAY)  # stopped before the bound
    emu.clear_faults()
    fixed.advance(HOUR)
    run_job(incremental("1h"), [sink], client_for(emu))
    assert opens(sink, "1h") == closed_opens("1h", now - 30 * DAY, fixed.now_ms())  # no hole left behind


def test_after_a_completed_first_load_the_catch_up_bound_applies(pinned):
    fixed, emu, sink = pinned
    client = client_for(emu)
    run_job(incremental("1h"), [sink], client)
    fixed.advance(20 * DAY)  # down for 20 days: the next run catches up 7 days, the gap filler does the rest
    result = run_job(incremental("1h"), [sink], client)
    assert result.start == ms_to_dt(fixed.now_ms() - 7 * DAY - (fixed.now_ms() - 7 * DAY) % HOUR)
    assert opens(sink, "1h")[-1] == ms_to_dt(fixed.now_ms() - fixed.now_ms() % HOUR - HOUR)


def test_a_corrected_last_candle_is_read_again(pinned):
    fixed, emu, sink = pinned
    client = client_for(emu)
    run_job(incremental("5m"), [sink], client)
    last = sink.read(KLINES_M5, "BTCUSDT")[-1]
    open_ms = dt_to_ms(last["open_time"])
    row = emu.query_klines("BTCUSDT", "5m", open_ms, open_ms, 1)[0]
    corrected = list(row)
    corrected[5] = str(Decimal(row[5]) + Decimal("1.5"))  # the exchange corrects the volume later
    emu.set_kline_override("BTCUSDT", "5m", open_ms, corrected)
    result = run_job(incremental("5m"), [sink], client)  # same instant: nothing new, the last candle again
    assert result.start == last["open_time"] and result.rows_written == 1
    again = sink.read(KLINES_M5, "BTCUSDT", start=last["open_time"])
    assert len(again) == 1 and again[0]["volume"] == Decimal(row[5]) + Decimal("1.5")
    assert sink.count(KLINES_M5, "BTCUSDT") == len(closed_opens("5m", fixed.now_ms() - 30 * DAY, fixed.now_ms()))


def test_funding_still_resumes_after_the_newest_row(pinned):
    _fixed, emu, sink = pinned
    client = client_for(emu)
    run_job(Job(DataKind.FUNDING, "BTCUSDT", incremental=True), [sink], client)
    last = sink.last_time(FUNDING_RATES, "BTCUSDT")
    result = run_job(Job(DataKind.FUNDING, "BTCUSDT", incremental=True), [sink], client)
    assert last is not None and result.start == last + timedelta(milliseconds=1) and result.rows_written == 0


def test_agg_trades_resume_at_the_newest_stored_millisecond(pinned):
    fixed, emu, sink = pinned
    client = client_for(emu)
    start = fixed.now_ms() - 2 * HOUR
    run_job(Job(DataKind.AGG_TRADES, "BTCUSDT", start=ms_to_dt(start), end=ms_to_dt(start + HOUR)), [sink], client)
    rows = sink.read(AGG_TRADES, "BTCUSDT")
    i = next(i for i in range(len(rows) - 1) if rows[i]["time"] == rows[i + 1]["time"])  # two trades in one ms
    cut = rows[i]["agg_trade_id"]  # a run stopped between them: the second one is not stored
    sink._tx(lambda cur: cur.execute("DELETE FROM agg_trades WHERE agg_trade_id > ?", (cut,)))
    assert sink.last_time(AGG_TRADES, "BTCUSDT") == rows[i]["time"]
    job = Job(DataKind.AGG_TRADES, "BTCUSDT", end=ms_to_dt(start + HOUR), incremental=True)
    result = run_job(job, [sink], client)
    assert result.start == rows[i]["time"]
    assert [r["agg_trade_id"] for r in sink.read(AGG_TRADES, "BTCUSDT")] == [r["agg_trade_id"] for r in rows]
