"""Data health: counts, edges, freshness against a pinned clock, completeness, holes, ledger, runs, chart data."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest

from binance_extractor import clock, health, timeframes
from binance_extractor.errors import InputError
from binance_extractor.kinds import Dataset
from binance_extractor.sinks.base import GapRecord, RunRecord, Sink
from binance_extractor.timeutil import dt_to_ms, iso
from tests.binance_extractor.sinks.conftest import dt, funding, klines, trades
from tests.binance_extractor.store_helpers import store, store_kind  # noqa: F401

FUNDING_RATES = Dataset.of_table("funding_rates")
TRADES = Dataset.of_table("trades")

M5 = timeframes.parse("5m").ms
KLINES_M5 = Dataset.of_table("klines_m5")
KLINES_H1 = Dataset.of_table("klines_h1")


def fill(sink: Sink, n: int = 200, cut: tuple[int, int] = (50, 55)) -> list:
    """XRPUSDT m5 candles with rows ``cut`` removed (a hole of 5 candles), BTCUSDT complete."""
    rows = klines("XRPUSDT", n=n)
    sink.write(KLINES_M5, rows[: cut[0]] + rows[cut[1] :])
    sink.write(KLINES_M5, klines("BTCUSDT", n=n))
    return rows


def test_counts_edges_lag_completeness_and_holes(store: Sink) -> None:  # noqa: F811
    rows = fill(store)
    last_open = dt_to_ms(rows[-1].open_time)
    now = last_open + 3 * M5 + 1000  # the candle after the last one closed, and two more: 2 candles behind
    start, end = rows[0].open_time, rows[-1].open_time + timedelta(minutes=5)
    with clock.using(clock.FixedClock(now)):
        found = {h.symbol: h for h in health.table_health(store, "klines_m5", start=start, end=end)}
    assert set(found) == {"BTCUSDT", "XRPUSDT"}
    xrp, btc = found["XRPUSDT"], found["BTCUSDT"]
    assert (xrp.rows, btc.rows) == (195, 200)
    assert xrp.first == rows[0].open_time and xrp.last == rows[-1].open_time
    assert xrp.lag_s == 2 * 300
    assert xrp.stale  # the first missing candle closed 5 min 1 s ago: beyond the 5-minute grace
    assert not health.is_stale(KLINES_M5, rows[-1].open_time, last_open + 2 * M5 + 1000, 300_000)
    assert health.is_stale(KLINES_M5, rows[-1].open_time, last_open + 3 * M5 + 1000, 300_000)
    assert not health.is_stale(KLINES_M5, rows[-1].open_time, last_open + 3 * M5 + 1000, 400_000)
    assert (xrp.expected, xrp.stored, xrp.missing) == (200, 195, 5)
    assert xrp.completeness == pytest.approx(0.975)
    [hole] = xrp.open_holes
    assert (hole["start"], hole["end"], hole["missing"]) == (iso(rows[50].open_time), iso(rows[55].open_time), 5)
    assert hole["status"] == "open"
    assert btc.open_holes == [] and btc.completeness == 1.0


def test_symbols_by_index_seeks_and_row_count_bound(store: Sink) -> None:  # noqa: F811
    rows = fill(store)
    store.write(KLINES_M5, klines("AAAUSDT", n=3) + klines("ZZZUSDT", n=3))
    assert health.stored_symbols(store, KLINES_M5) == ["AAAUSDT", "BTCUSDT", "XRPUSDT", "ZZZUSDT"]
    assert health.stored_symbols(store, KLINES_H1) == []
    now = dt_to_ms(rows[-1].close_time) + 1
    small = health.symbol_health(store, "klines_m5", "XRPUSDT", now_ms=now, exact_limit=100)
    assert (small.rows, small.rows_exact) == (200, False)  # the key span: the 5 missing candles not counted
    exact = health.symbol_health(store, "klines_m5", "XRPUSDT", now_ms=now, exact_limit=None)
    assert (exact.rows, exact.rows_exact) == (195, True)


def test_trades_are_counted_only_under_the_bound(store: Sink) -> None:  # noqa: F811
    t = trades(n=400)
    store.write(TRADES, t)
    now = dt_to_ms(t[-1].time) + 1
    small = health.symbol_health(store, "trades", "XRPETH", now_ms=now, exact_limit=10)
    assert (small.rows, small.rows_exact, small.expected) == (None, False, None)
    full = health.symbol_health(store, "trades", "XRPETH", now_ms=now)
    assert (full.rows, full.rows_exact) == (400, True)
    assert full.stored == 400  # every trade is inside the 7-day window ending now


def test_exchange_confirmed_holes_are_not_open(store: Sink) -> None:  # noqa: F811
    rows = fill(store)
    store.record_gap(GapRecord("klines_m5", "XRPUSDT", rows[50].open_time, rows[55].open_time, "test", "rest", 2))
    h = health.symbol_health(store, "klines_m5", "XRPUSDT", start=rows[0].open_time, end=rows[-1].close_time,
                             now_ms=dt_to_ms(rows[-1].close_time) + 1)  # fmt: skip
    assert h.open_holes == [] and h.missing == 0
    assert h.confirmed_holes == [{"start": iso(rows[50].open_time), "end": iso(rows[55].open_time)}]


def test_holes_not_fillable_yet_are_open_with_their_reason(store: Sink) -> None:  # noqa: F811
    """A pending ledger row (the gap filler tried; the evidence rule could not confirm the hole yet) marks the hole
    it overlaps "not fillable yet": still open and missing, never confirmed."""
    rows = fill(store)
    why = "ended less than ledger_settle (60 min) before the exchange's closed bound"
    store.record_gap(
        GapRecord("klines_m5", "XRPUSDT", rows[50].open_time, rows[55].open_time, "test", "refetch:auto", 2,
                  status="pending", reason=why)
    )  # fmt: skip
    h = health.symbol_health(store, "klines_m5", "XRPUSDT", start=rows[0].open_time, end=rows[-1].close_time,
                             now_ms=dt_to_ms(rows[-1].close_time) + 1)  # fmt: skip
    [hole] = h.open_holes
    assert (hole["start"], hole["status"], hole["reason"]) == (iso(rows[50].open_time), "not_fillable_yet", why)
    assert h.missing == 5 and h.confirmed_holes == []
    assert store.known_gaps(KLINES_M5, "XRPUSDT") == []  # detection still finds it: the gap filler retries it


def test_last_runs_of_the_symbol_newest_first(store: Sink) -> None:  # noqa: F811
    rows = fill(store, n=30, cut=(10, 11))
    base = rows[0].open_time
    for i, (symbol, outcome) in enumerate([("XRPUSDT", "success"), ("BTCUSDT", "success"), ("XRPUSDT", "failed"),
                                           ("XRPUSDT", "success"), ("XRPUSDT", "failed")]):  # fmt: skip
        store.record_run(
            RunRecord(
                run_id=str(uuid.uuid4()), kind="klines", table="klines_m5", symbol=symbol, interval="5m",
                range_start=base, range_end=base, requested_by=f"test {i}", rows_written=i,
                started_at=base + timedelta(minutes=i), finished_at=base + timedelta(minutes=i, seconds=5),
                outcome=outcome, error="boom" if outcome == "failed" else None,
            )
        )  # fmt: skip
    h = health.symbol_health(store, "klines_m5", "XRPUSDT", runs=3, now_ms=dt_to_ms(rows[-1].close_time) + 1)
    assert [(r["requested_by"], r["outcome"]) for r in h.runs] == [
        ("test 4", "failed"), ("test 3", "success"), ("test 2", "failed")
    ]  # fmt: skip
    assert h.runs[0]["error"] == "boom"


def test_funding_health(store: Sink) -> None:  # noqa: F811
    f = funding()
    store.write(FUNDING_RATES, f)
    now = dt_to_ms(f[-1].funding_time) + 9 * 3_600_000
    h = health.symbol_health(store, "funding_rates", "XRPUSDT", start=f[0].funding_time, now_ms=now)
    assert h.rows == len(f) and h.lag_s == 3600
    assert h.stored == len(f) and h.expected == len(f) + h.missing


def test_chart_points_are_the_newest_candles_with_exact_text(store: Sink) -> None:  # noqa: F811
    rows = fill(store, n=80)
    pts = health.chart_points(store, "klines_m5", "XRPUSDT", points=20)
    assert [p["t"] for p in pts] == [iso(r.open_time) for r in rows[60:]]
    assert pts[-1]["close"] == format(rows[-1].close.normalize(), "f")
    assert [Decimal(p["volume"]) for p in pts] == [r.volume for r in rows[60:]]
    assert health.chart_points(store, "klines_m5", "NOPEUSDT") == []
    upto = health.chart_points(store, "klines_m5", "XRPUSDT", points=10, end=rows[30].open_time)
    assert [p["t"] for p in upto] == [iso(r.open_time) for r in rows[20:30]]


def test_window_and_lag_rules() -> None:
    tf = timeframes.parse("1h")
    now = 1_706_745_600_000 + 30 * 60_000  # 2024-02-01T00:30Z
    assert health.lag_seconds(KLINES_H1, dt(now - 30 * 60_000 - tf.ms), now) == 0  # newest closed stored
    assert health.lag_seconds(KLINES_H1, dt(now - 30 * 60_000 - 3 * tf.ms), now) == 2 * 3600
    assert health.lag_seconds(KLINES_H1, None, now) is None
    lo, hi = health.window_bounds(KLINES_H1, 1, now)
    assert (lo, hi) == (1_706_745_600_000 - 86_400_000, 1_706_745_600_000)
    with pytest.raises(InputError):
        health.window_bounds(KLINES_H1, 0, now)
    with pytest.raises(InputError):
        health.window_bounds(KLINES_H1, 1, now, dt(now), dt(now - 1))


@pytest.mark.mysql
def test_mysql_health_reads_indexes_never_scans(mysql_conn_id: str) -> None:
    """MariaDB's Handler_read_rnd_next counts rows read sequentially (table scans, and the window function's
    temporary table): a health read must stay proportional to the window (1 day = 288 candles a symbol), far
    below one scan of the table (3000 rows a symbol)."""
    from binance_extractor.sinks.mysql import MySqlStore

    sink = MySqlStore(mysql_conn_id)
    sink.ensure_schema()
    rows = fill(sink, n=3000, cut=(1000, 1010))
    conn = sink._connection()

    def scans() -> int:
        cur = conn.cursor()
        cur.execute("SHOW SESSION STATUS LIKE 'Handler_read_rnd_next'")
        value = int(cur.fetchone()[1])
        cur.close()
        return value

    before = scans()
    now = dt_to_ms(rows[-1].close_time) + 1
    result = health.table_health(sink, "klines_m5", window_days=1, now_ms=now)
    health.chart_points(sink, "klines_m5", "XRPUSDT")
    health.recent_runs(sink, KLINES_M5, "XRPUSDT")
    assert {h.symbol for h in result} == {"BTCUSDT", "XRPUSDT"}
    assert scans() - before < 3000
    plan = sink.query("EXPLAIN SELECT COUNT(*) FROM klines_m5 WHERE symbol = %s", ("XRPUSDT",))
    assert all(row[3] != "ALL" for row in plan), plan  # type column: never a full table scan
    sink.close()


def test_sqlite_health_statements_all_use_an_index(sqlite_conn_id: str) -> None:
    """Every statement a health read runs on SQLite, checked with EXPLAIN QUERY PLAN: no bare table SCAN."""
    from binance_extractor.sinks.sqlite import SqliteStore

    sink = SqliteStore(sqlite_conn_id)
    rows = fill(sink, n=300, cut=(100, 104))
    sink.record_gap(GapRecord("klines_m5", "XRPUSDT", rows[10].open_time, rows[11].open_time, "t", "rest", 1))
    conn = sink._connection()
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    now = dt_to_ms(rows[-1].close_time) + 1
    health.table_health(sink, "klines_m5", window_days=0.5, now_ms=now)
    health.chart_points(sink, "klines_m5", "XRPUSDT")
    conn.set_trace_callback(None)
    selects = [s for s in statements if s.lstrip().upper().startswith(("SELECT", "WITH"))]
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert len(selects) >= 10
    for sql in selects:
        plan = " | ".join(str(r[3]) for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}"))
        for step in plan.split(" | "):
            words = step.split()
            # a table or full index scan; derived tables are bounded, an index walk under LIMIT n reads n entries
            limited = "INDEX" in step and re.search(r"LIMIT \d+\s*$", sql)
            if words[:1] == ["SCAN"] and words[1] in tables and not limited:
                pytest.fail(f"table scan: {step!r} in {sql!r}")
    sink.close()
