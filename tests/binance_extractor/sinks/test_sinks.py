"""Behaviour every database sink must share, run against real SQLite, MariaDB and the Mongo wire server."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from binance_extractor.config import Settings
from binance_extractor.errors import InputError, SinkError
from binance_extractor.kinds import Dataset
from binance_extractor.models import AggTrade, FundingRate, Kline, Trade
from binance_extractor.sinks.base import GapRecord, RunRecord
from binance_extractor.sinks.retention import apply_retention
from binance_extractor.sinks.schema import LATEST_VERSION
from tests.binance_extractor.sinks.conftest import agg_trades, assert_utc, dt, funding, klines, trades

FUNDING_RATES = Dataset.of_table("funding_rates")
KLINES_H1 = Dataset.of_table("klines_h1")
KLINES_H4 = Dataset.of_table("klines_h4")
KLINES_M5 = Dataset.of_table("klines_m5")
TRADES = Dataset.of_table("trades")


def _models(model: type[Any], rows: list[dict[str, Any]]) -> list[Any]:
    return [model(**r) for r in rows]


def test_roundtrip_is_exact(sink: Any) -> None:
    btc = klines("BTCUSDT", 200)
    tiny = klines("1000PEPEUSDT", 200, scale=6)  # prices with 9-10 decimals
    assert sink.write(KLINES_M5, btc) == 200
    assert sink.write(KLINES_M5, tiny) == 200
    got = sink.read(KLINES_M5, "1000PEPEUSDT")
    assert _models(Kline, got) == tiny
    assert got[0]["close"] == tiny[0].close and isinstance(got[0]["close"], Decimal)
    assert sink.read(KLINES_M5, "BTCUSDT")[0]["quote_volume"] > 10**10
    for row in got[:3]:
        assert_utc(row["open_time"])
        assert_utc(row["close_time"])
    assert _models(Kline, sink.read(KLINES_M5, "BTCUSDT")) == btc

    for table, rows, model in [
        (FUNDING_RATES, funding(), FundingRate),
        (TRADES, trades(), Trade),
        (Dataset.of_table("agg_trades"), agg_trades(), AggTrade),
    ]:
        assert sink.write(table, rows) == len(rows)
        back = sink.read(table, rows[0].symbol)
        assert _models(model, back) == sorted(rows, key=lambda r: r.key())
        assert all(type(v) is not float for r in back for v in r.values())
    assert sink.count(KLINES_M5) == 400
    assert sink.count(KLINES_M5, "BTCUSDT", btc[10].open_time, btc[20].open_time) == 10  # half-open range


def test_rewrite_changes_nothing(sink: Any) -> None:
    rows = klines(n=250)
    sink.write(KLINES_M5, rows)
    before = sink.read(KLINES_M5, "XRPUSDT")
    assert sink.write(KLINES_M5, rows) == 250
    assert sink.count(KLINES_M5) == 250
    assert sink.read(KLINES_M5, "XRPUSDT") == before


def test_overlapping_write_updates_in_place(sink: Any) -> None:
    old = klines(n=200)
    new = klines(n=200, extra=Decimal("0.5"))
    sink.write(KLINES_M5, old[:120])
    sink.write(KLINES_M5, new[80:])
    assert sink.count(KLINES_M5, "XRPUSDT") == 200
    assert _models(Kline, sink.read(KLINES_M5, "XRPUSDT")) == old[:80] + new[80:]


def test_concurrent_writers_leave_one_row_per_key(make_sink: Callable[..., Any]) -> None:
    make_sink().ensure_schema()
    versions = [klines(n=300, extra=Decimal(i)) for i in range(2)]
    errors: list[BaseException] = []

    def writer(i: int) -> None:
        s = make_sink(retry_attempts=6)
        try:
            rows = versions[i][i * 100 : i * 100 + 200]  # 0..199 and 100..299: 100 keys overlap
            for _ in range(3):
                for k in range(0, len(rows), 25):
                    s.write(KLINES_M5, rows[k : k + 25])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    check = make_sink()
    rows = check.read(KLINES_M5, "XRPUSDT")
    assert check.count(KLINES_M5) == 300 == len(rows)
    assert len({r["open_time"] for r in rows}) == 300
    got = _models(Kline, rows)
    assert got[:100] == versions[0][:100] and got[200:] == versions[1][200:]
    assert all(g in (versions[0][k + 100], versions[1][k + 100]) for k, g in enumerate(got[100:200]))


def _rejected(kind: str, good: Kline) -> Kline:
    """A row the database (or, for Mongo, the Decimal128 encoder) refuses."""
    if kind == "mongo":
        return good.model_copy(update={"volume": Decimal("1." + "1" * 40)})
    return good.model_copy(update={"close": None})  # NOT NULL violation


def test_failing_batch_leaves_nothing(make_sink: Callable[..., Any], sink_kind: str) -> None:
    sink = make_sink(batch_size=100) if sink_kind == "mysql" else make_sink()
    sink.ensure_schema()
    rows = klines(n=1000)
    sink.write(KLINES_M5, rows[:10])
    before = sink.read(KLINES_M5, "XRPUSDT")
    changed = klines(n=1000, extra=Decimal(7))
    batch = [*changed[:750], _rejected(sink_kind, changed[750]), *changed[751:]]
    with pytest.raises(SinkError) as err:
        sink.write(KLINES_M5, batch)
    assert "sink" in str(err.value) and "\n" not in str(err.value)
    assert sink.count(KLINES_M5) == 10
    assert sink.read(KLINES_M5, "XRPUSDT") == before
    assert sink.write(KLINES_M5, changed) == 1000  # the connection is still usable
    assert sink.count(KLINES_M5) == 1000


def test_last_and_first_time_per_symbol(sink: Any) -> None:
    a, b = klines("AAAUSDT", 50), klines("BBBUSDT", 30, offset=100)
    sink.write(KLINES_M5, b)
    sink.write(KLINES_M5, a)
    assert sink.last_time(KLINES_M5, "AAAUSDT") == a[-1].open_time
    assert sink.first_time(KLINES_M5, "AAAUSDT") == a[0].open_time
    assert sink.last_time(KLINES_M5, "BBBUSDT") == b[-1].open_time
    assert sink.first_time(KLINES_M5, "BBBUSDT") == b[0].open_time
    assert sink.last_time(KLINES_M5, "CCCUSDT") is None
    assert sink.last_time(KLINES_H4, "AAAUSDT") is None  # a table never written is created empty
    f = funding()
    sink.write(FUNDING_RATES, f)
    assert sink.last_time(FUNDING_RATES, "XRPUSDT") == f[-1].funding_time  # ms jitter kept
    assert f[-1].funding_time.microsecond or f[0].funding_time.microsecond
    tr = trades()
    sink.write(TRADES, tr)
    assert sink.last_time(TRADES, "XRPETH") == max(tr, key=lambda t: t.trade_id).time
    assert sink.first_time(TRADES, "XRPETH") == min(tr, key=lambda t: t.trade_id).time
    with pytest.raises(InputError):  # a table name is read once, at the edge
        Dataset.of_table("klines_x9")


def test_schema_is_idempotent_and_migrates_old_versions(make_sink: Callable[..., Any]) -> None:
    old = make_sink()
    old.ensure_schema(target=1)
    assert old.schema_version() == 1
    old.write(KLINES_M5, klines(n=20))
    old.close()
    for _ in range(2):
        s = make_sink()
        s.ensure_schema()
        s.ensure_schema()
        assert s.schema_version() == LATEST_VERSION
        assert s.count(KLINES_M5) == 20
    k = klines(n=2)
    s.record_gap(GapRecord("klines_m5", "XRPUSDT", k[0].open_time, k[1].open_time, "test", "rest", 1))
    assert len(s.known_gaps(KLINES_M5, "XRPUSDT")) == 1


def test_retention_deletes_in_batches_and_is_off_by_default(sink: Any) -> None:
    rows = klines(n=300)  # 25 hours of 5m candles
    sink.write(KLINES_M5, rows)
    sink.write(KLINES_M5, klines("BTCUSDT", n=300))
    sink.write(FUNDING_RATES, funding())
    now = rows[-1].open_time + timedelta(days=1)
    assert apply_retention(sink, Settings(symbols=(), timeframes={}), now=now) == {}
    assert sink.count(KLINES_M5) == 600
    cfg = Settings(symbols=(), timeframes={}, retention={"klines_m5": 1, "klines_h1": None})
    cutoff = now - timedelta(days=1)
    expired = sum(1 for r in rows if r.open_time < cutoff)
    assert 0 < expired < 300
    assert apply_retention(sink, cfg, batch=37, now=now) == {"klines_m5": 2 * expired}
    assert sink.first_time(KLINES_M5, "XRPUSDT") == min(r.open_time for r in rows if r.open_time >= cutoff)
    assert sink.count(KLINES_M5) == 600 - 2 * expired
    assert sink.count(FUNDING_RATES) == len(funding())
    with pytest.raises(InputError):
        apply_retention(sink, Settings(symbols=(), timeframes={}, retention={"gap_ledger": 3}))


def test_gap_ledger(sink: Any) -> None:
    k = klines(n=10)
    sink.record_gap(GapRecord("klines_m5", "XRPUSDT", k[5].open_time, k[7].open_time, "dag:gaps/run:1", "rest", 2))
    sink.record_gap(GapRecord("klines_m5", "XRPUSDT", k[1].open_time, k[2].open_time, "cli", "archive", 1))
    # same key: updated
    sink.record_gap(GapRecord("klines_m5", "XRPUSDT", k[5].open_time, k[8].open_time, "cli", "rest", 3))
    sink.record_gap(GapRecord("klines_m5", "BTCUSDT", k[0].open_time, k[1].open_time, "cli", "rest", 1))
    gaps = sink.known_gaps(KLINES_M5, "XRPUSDT")
    assert gaps == [(k[1].open_time, k[2].open_time), (k[5].open_time, k[8].open_time)]
    assert_utc(gaps[0][0])
    assert sink.known_gaps(KLINES_H1, "XRPUSDT") == []


def test_gap_record_row_is_what_every_store_writes() -> None:
    start = dt(0).replace(microsecond=123_456)
    gap = GapRecord("klines_m5", "XRPUSDT", start, dt(600_000), "x" * 300, "refetch:archive" * 3, 2, dt(1))
    row = gap.as_row()
    assert row["gap_start"] == start.replace(microsecond=123_000)  # the millisecond every store keeps
    assert (len(row["checked_by"]), len(row["method"]), row["confirmed_at"]) == (255, 32, dt(1))
    with pytest.raises(dataclasses.FrozenInstanceError):
        gap.requests = 3  # type: ignore[misc]


def test_audit_rows(sink: Any) -> None:
    k = klines(n=3)
    run = RunRecord(
        run_id="6f1f7a4e-0000-4000-8000-000000000001",
        kind="klines",
        table="klines_m5",
        symbol="XRPUSDT",
        interval="5m",
        range_start=k[0].open_time,
        range_end=k[2].open_time,
        requested_by="dag:binance_klines_m5/run:scheduled__1/task:extract/map:3",
        started_at=k[0].open_time,
        outcome="failed",
    )
    sink.record_run(run)
    run.rows_written, run.outcome, run.error = 2, "failed", "mysql sink (h:1/db): (2013) Lost connection\nx"
    run.finished_at = k[0].open_time + timedelta(seconds=3, milliseconds=250)
    sink.record_run(run)
    (got,) = sink.runs()
    assert got.rows_written == 2 and got.outcome == "failed" and got.duration_ms == 3250
    assert got.error == "mysql sink (h:1/db): (2013) Lost connection x"
    assert (got.range_start, got.range_end, got.requested_by) == (run.range_start, run.range_end, run.requested_by)
    assert_utc(got.started_at)


def test_raw_queries_for_other_modules(sink: Any, sink_kind: str) -> None:
    rows = klines(n=10)
    sink.write(KLINES_M5, rows)
    if sink_kind == "mongo":
        doc = sink.database()["klines_m5"].find_one({}, sort=[("open_time", -1)])
        assert doc["open_time"] == rows[-1].open_time
        return
    got = sink.query(
        f"SELECT MAX(open_time) FROM klines_m5 WHERE symbol = {sink.ph} AND open_time >= {sink.ph}",
        ["XRPUSDT", sink.db_time(rows[3].open_time)],
    )
    assert sink.py_time(got[0][0]) == rows[-1].open_time


def test_concurrent_first_use_creates_the_schema_once(make_sink: Callable[..., Any]) -> None:
    errors: list[BaseException] = []
    sinks = [make_sink(retry_attempts=6) for _ in range(3)]

    def first_use(s: Any) -> None:
        try:
            s.ensure_schema()
            s.write(KLINES_M5, klines(n=50))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=first_use, args=(s,)) for s in sinks]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert sinks[0].schema_version() == LATEST_VERSION and sinks[0].count(KLINES_M5) == 50


def test_wrong_rows_for_the_table_are_refused(sink: Any) -> None:
    with pytest.raises(InputError, match="klines_m5 holds Kline rows, got a FundingRate"):
        sink.write(KLINES_M5, funding())
    with pytest.raises(InputError, match="klines_h1 cannot hold 5m klines"):
        sink.write(KLINES_H1, klines(n=2))
    with pytest.raises(InputError, match="unknown table"):
        Dataset.of_table("candles")
    assert sink.count(KLINES_M5) == 0 and sink.count(KLINES_H1) == 0
