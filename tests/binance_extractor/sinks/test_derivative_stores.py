"""Issue #23 done-when: two days of m5 and h1 mark, index and premium-index klines for two symbols, and their open
interest, extracted by the CLI from the emulator, are exact in every store, with no open candle; a re-run
changes nothing (idempotent upserts)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from binance_extractor import cli
from binance_extractor.clock import FixedClock
from binance_extractor.derivative_models import PRICE_MODELS, OpenInterest
from binance_extractor.kinds import Dataset
from binance_extractor.prices import Price
from binance_extractor.timeutil import dt_to_ms, iso, ms_to_dt
from tests.binance_extractor.sinks.conftest import new_sink
from tests.emulator import datasets as DS

OPEN_INTEREST = Dataset.of_table("open_interest")

SYMBOLS = ("BTCUSDT", "ETHUSDT")
DAY = 86_400_000


def _run(argv: list[str]) -> list[Any]:
    return cli.execute(argv)


def test_two_days_of_every_new_series_are_exact_in_the_store(
    store: tuple[str, str], frozen_clock: FixedClock, make_emulator: Any
) -> None:
    kind, conn_id = store
    emu = make_emulator()
    now = frozen_clock.now_ms() + 123_456  # mid-candle: the open m5 and h1 candles must not be stored
    frozen_clock.set(now)
    start = now - 2 * DAY
    span = ["--symbols", ",".join(SYMBOLS), "--start", iso(ms_to_dt(start)), "--end", iso(ms_to_dt(now))]
    sinks = ["--sink", kind, "--conn-id", conn_id]
    for _ in range(2):  # the second run changes nothing
        for price in ("mark", "index", "premium"):
            for interval in ("5m", "1h"):
                _run(["klines", "--price", price, "--interval", interval, *span, *sinks])
        _run(["open-interest", *span, *sinks])
    sink = new_sink(kind, conn_id)
    try:
        for price in (Price.MARK, Price.INDEX, Price.PREMIUM):
            for interval, name in (("5m", "m5"), ("1h", "h1")):
                table = f"{price.table_prefix}_{name}"
                for symbol in SYMBOLS:
                    step = 300_000 if interval == "5m" else 3_600_000
                    first = start + (-start) % step
                    rows = DS.price_rows(emu, price.value, symbol, interval, first, now)
                    want = [PRICE_MODELS[price].from_rest(symbol, interval, r) for r in rows]
                    assert want and dt_to_ms(want[-1].close_time) < now  # the source itself has no open candle
                    got = [PRICE_MODELS[price](**r) for r in sink.read(Dataset.of_table(table), symbol)]
                    assert got == want, (table, symbol)
                    assert all(isinstance(k.close, Decimal) for k in got)
                    assert sink.count(Dataset.of_table(table), symbol) == len(want)
                    assert dt_to_ms(got[-1].open_time) + step <= now  # the last stored candle is closed
        for symbol in SYMBOLS:
            first = start + (-start) % 300_000
            rest = DS.query_open_interest(emu, symbol, "5m", first, now - 1, 10**6)
            want_oi = [OpenInterest.from_rest(r) for r in rest]
            got_oi = [OpenInterest(**r) for r in sink.read(OPEN_INTEREST, symbol)]
            closed = [o for o in want_oi if dt_to_ms(o.time) < now - 5_000]  # the closed bound's margin
            assert got_oi == closed[: len(got_oi)] and len(got_oi) >= len(closed) - 1
            assert got_oi[0].open_interest == Decimal(rest[0]["sumOpenInterest"])  # exact (a store may pad places)
    finally:
        sink.close()


NEW_TABLES = ("mark_klines_m5", "index_klines_m5", "premium_klines_m5", "mark_klines_h1", "open_interest")


@pytest.mark.parametrize("kind", ["sqlite", "mysql", "postgres"])
def test_a_hole_cut_in_each_new_table_is_refilled_by_one_gap_filler_pass(
    kind: str, request: pytest.FixtureRequest, frozen_clock: FixedClock, make_emulator: Any
) -> None:
    from tests.binance_extractor.test_gaps import delete

    conn_id = request.getfixturevalue(f"{kind}_conn_id")
    make_emulator()
    now = frozen_clock.now_ms()
    start, end = now - 2 * DAY, now - 3 * 3_600_000
    span = ["--symbols", "BTCUSDT", "--start", iso(ms_to_dt(start)), "--end", iso(ms_to_dt(end))]
    sinks = ["--sink", kind, "--conn-id", conn_id]
    for price in ("mark", "index", "premium"):
        _run(["klines", "--price", price, "--interval", "5m", *span, *sinks])
    _run(["klines", "--price", "mark", "--interval", "1h", *span, *sinks])
    _run(["open-interest", *span, *sinks])
    sink = new_sink(kind, conn_id)
    try:
        full = {t: sink.count(Dataset.of_table(t), "BTCUSDT") for t in NEW_TABLES}
        for table in NEW_TABLES:
            assert delete(sink, table, "BTCUSDT", start + 6 * 3_600_000, start + 9 * 3_600_000) > 0
            assert sink.count(Dataset.of_table(table), "BTCUSDT") < full[table]
    finally:
        sink.close()
    argv = ["fill-gaps", *[x for t in NEW_TABLES for x in ("--table", t)], "--symbols", "BTCUSDT"]
    (report,) = _run([*argv, "--start", iso(ms_to_dt(start)), "--end", iso(ms_to_dt(end)), *sinks])
    assert report["totals"]["found"] == len(NEW_TABLES) and report["totals"]["remaining"] == 0
    sink = new_sink(kind, conn_id)
    try:
        assert {t: sink.count(Dataset.of_table(t), "BTCUSDT") for t in NEW_TABLES} == full
        assert all(
            sink.known_gaps(Dataset.of_table(t), "BTCUSDT") == [] for t in NEW_TABLES
        )  # nothing wrongly confirmed
    finally:
        sink.close()


def test_read_export_and_health_know_the_new_tables(
    sqlite_conn_id: str, frozen_clock: FixedClock, make_emulator: Any, tmp_path: Any
) -> None:
    import pyarrow.parquet as pq

    from binance_extractor import health, reader

    make_emulator()
    now = frozen_clock.now_ms()
    start = now - DAY
    span = ["--symbols", "BTCUSDT", "--start", iso(ms_to_dt(start)), "--end", iso(ms_to_dt(now))]
    sinks = ["--sink", "sqlite", "--conn-id", sqlite_conn_id]
    _run(["klines", "--price", "premium", "--interval", "1h", *span, *sinks])
    _run(["open-interest", *span, *sinks])
    sink = new_sink("sqlite", sqlite_conn_id)
    try:
        df = reader.read("premium_klines_h1", "BTCUSDT", store=sink)
        assert len(df) == 23 and str(df["low"].dtype).startswith("decimal")  # the candle closing at now: not yet
        oi = reader.read("open_interest", "BTCUSDT", store=sink)
        assert len(oi) == 287 or len(oi) == 288
        assert oi["open_interest"].iloc[0] == sink.read(OPEN_INTEREST, "BTCUSDT")[0]["open_interest"]
        for table in ("premium_klines_h1", "open_interest"):
            end = ms_to_dt(now - 3_600_000)  # health judges on its own clock: up to the candle closed by the run
            h = health.symbol_health(sink, table, "BTCUSDT", start=ms_to_dt(start), end=end, now_ms=now)
            assert h.stored == h.expected == len(sink.read(Dataset.of_table(table), "BTCUSDT", ms_to_dt(start), end)), (
                table
            )
            assert h.completeness == 1.0 and h.expected > 20
            assert h.lag_s is not None and h.lag_s <= 3600 and not h.stale
    finally:
        sink.close()
    out = tmp_path / "oi.parquet"
    (result,) = _run(["export", "--table", "open_interest", "--output", str(out), *sinks])
    assert result["rows"] == len(oi)
    table = pq.read_table(out)
    assert table.num_rows == len(oi) and "open_interest_value" in table.column_names


def test_json_lines_get_the_new_series(frozen_clock: FixedClock, make_emulator: Any, tmp_path: Any) -> None:
    import json

    emu = make_emulator()
    now = frozen_clock.now_ms()
    out = tmp_path / "rows.jsonl"
    span = ["--symbols", "ETHUSDT", "--start", iso(ms_to_dt(now - 6 * 3_600_000)), "--end", iso(ms_to_dt(now))]
    _run(["klines", "--price", "index", "--interval", "1h", *span, "--sink", "jsonl", "--output", str(out)])
    _run(["open-interest", *span, "--sink", "jsonl", "--output", str(out)])
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    index = [x for x in lines if "sample_count" in x]
    assert (
        len(index) == 5
        and index[0]["open"] == DS.price_rows(emu, "index", "ETHUSDT", "1h", now - 6 * 3_600_000, now)[0][1]
    )
    assert len([x for x in lines if "open_interest_value" in x]) >= 71


def test_open_interest_hole_older_than_the_rest_horizon_comes_from_the_archive_or_stays_open(
    sqlite_conn_id: str, frozen_clock: FixedClock, make_emulator: Any
) -> None:
    from tests.binance_extractor.test_gaps import delete

    emu = make_emulator()
    now = frozen_clock.now_ms()
    day = now - now % DAY - 60 * DAY  # two days, two months ago: only the metrics files serve them
    span = ["--symbols", "BTCUSDT", "--start", iso(ms_to_dt(day)), "--end", iso(ms_to_dt(day + 2 * DAY))]
    sinks = ["--sink", "sqlite", "--conn-id", sqlite_conn_id]
    _run(["open-interest", *span, *sinks])
    assert emu.count("/futures/data/openInterestHist") == 0
    sink = new_sink("sqlite", sqlite_conn_id)
    try:
        assert sink.count(OPEN_INTEREST, "BTCUSDT") == 576
        delete(sink, "open_interest", "BTCUSDT", day + 3_600_000, day + 2 * 3_600_000)  # day 1: archive has it
        delete(sink, "open_interest", "BTCUSDT", day + DAY + 3_600_000, day + DAY + 2 * 3_600_000)  # day 2
    finally:
        sink.close()
    emu.archive_missing.add(f"BTCUSDT-metrics-{iso(ms_to_dt(day + DAY))[:10]}.zip")  # day 2's file is gone
    argv = ["fill-gaps", "--table", "open_interest", "--symbols", "BTCUSDT", "--start", iso(ms_to_dt(day))]
    (report,) = _run([*argv, "--end", iso(ms_to_dt(day + 2 * DAY)), *sinks])
    totals = report["totals"]
    assert (totals["found"], totals["filled"], totals["confirmed"]) == (2, 1, 0)
    assert emu.count("/futures/data/openInterestHist") == 0  # REST cannot be asked that far back
    sink = new_sink("sqlite", sqlite_conn_id)
    try:
        assert sink.count(OPEN_INTEREST, "BTCUSDT") == 576 - 12
        assert sink.known_gaps(OPEN_INTEREST, "BTCUSDT") == []  # never confirmed: no proof is possible
        (pending,) = [g for g in sink.gap_records(OPEN_INTEREST, "BTCUSDT")]
        assert pending.status == "pending" and "older than the 30 days" in (pending.reason or "")
    finally:
        sink.close()
