"""Gap detection, repair, closure and ledger against the loopback emulator and real SQLite, MariaDB, PostgreSQL
and Mongo.

Holes are made the way they happen: data is written through the CLI/pipeline from the emulator, then rows are
deleted through the sink's own connection (or the emulator has an outage, so the exchange never had them).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from binance_extractor import cli, clock, gaps, telemetry
from binance_extractor.airflow import gap_tasks
from binance_extractor.client import BinanceFuturesClient
from binance_extractor.gaps import Chunk, GapClosureError, GapSettings, Hole
from binance_extractor.kinds import Dataset
from binance_extractor.sinks import open_sinks
from binance_extractor.sinks.schema import spec_for
from binance_extractor.sinks.sql import SqlStore
from binance_extractor.sinks.sql_gaps import SqlGapQueries
from binance_extractor.timeutil import dt_to_ms, iso, ms_to_dt
from tests.emulator import Emulator
from tests.fixtures.clock import at_instants
from tests.fixtures.databases import mysql_admin

AGG_TRADES = Dataset.of_table("agg_trades")
FUNDING_RATES = Dataset.of_table("funding_rates")
KLINES_M5 = Dataset.of_table("klines_m5")

MIN = 60_000
M5 = 5 * MIN
HOUR = 3_600_000
DAY = 86_400_000
KLINES = "/fapi/v1/klines"
TIME = "/fapi/v1/time"  # the exchange's clock: what is closed (exchange_clock.closed_before)


# every test here runs at a pinned instant (tests/fixtures/clock.py), shared by the library and the emulator
pytestmark = pytest.mark.usefixtures("frozen_clock")


def midnight() -> int:
    """Yesterday 00:00 UTC of the pinned clock: every candle within 12 h of it is closed, the day's archive exists."""
    now = clock.now_ms()
    return now - now % DAY - DAY


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("mysql", marks=pytest.mark.mysql),
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mongo", marks=pytest.mark.mongo),
    ]
)
def store(request: pytest.FixtureRequest) -> str:
    request.getfixturevalue(f"{request.param}_conn_id")
    return str(request.param)


@pytest.fixture
def sqlite_store(sqlite_conn_id: str) -> str:
    return "sqlite"


@pytest.fixture
def client(emulator: Emulator) -> Iterator[BinanceFuturesClient]:
    c = BinanceFuturesClient.from_env()
    yield c
    c.close()


def write(sink: str, command: list[str], symbols: list[str], start: int, end: int) -> None:
    argv = [*command, "--symbols", ",".join(symbols), "--start", iso(ms_to_dt(start)), "--end", iso(ms_to_dt(end))]
    cli.execute([*argv, "--sink", sink])


def delete(sink: Any, table: str, symbol: str, lo: int, hi: int, column: str | None = None) -> int:
    """Delete rows with ``column`` (default: the key time) in [lo, hi) through the sink's own connection."""
    col = column or spec_for(table).time_column or ""
    is_time = column is None
    if sink.name == "mongo":
        a, b = (ms_to_dt(lo), ms_to_dt(hi)) if is_time else (lo, hi)
        return int(
            sink._call(lambda db: db[table].delete_many({"symbol": symbol, col: {"$gte": a, "$lt": b}}).deleted_count)
        )
    a, b = (sink._to_db("time", ms_to_dt(lo)), sink._to_db("time", ms_to_dt(hi))) if is_time else (lo, hi)
    c, ph = sink._q(col), sink.ph
    sql = f"DELETE FROM {sink._q(table)} WHERE symbol = {ph} AND {c} >= {ph} AND {c} < {ph}"

    def run(cur: Any) -> int:
        cur.execute(sql, (symbol, a, b))
        return int(cur.rowcount)

    return int(sink._tx(run))


def json_lines(out: str) -> list[Any]:
    """The command's JSON lines (a log line may share stdout when logging is set up by another test)."""
    return [json.loads(x) for x in out.splitlines() if x.startswith("{")]


def spans(scans: list[gaps.Scan]) -> dict[tuple[str, str], list[tuple[int, int, int]]]:
    return {(s.table, s.symbol): [(h.start_ms, h.end_ms, h.missing) for h in s.holes] for s in scans}


# --------------------------------------------------------------------------------------------- pure planning


def test_chunks_split_at_weekly_boundaries_and_stay_aligned() -> None:
    monday = dt_to_ms(datetime(2024, 1, 1, tzinfo=UTC))  # a Monday
    hole = Hole(gaps.gap_dataset("klines_h1"), "BTCUSDT", monday - 5 * HOUR, monday + 8 * DAY + 3 * HOUR, 0, 0, 0)
    chunks = gaps.chunk_holes([hole], 7 * DAY)
    assert [(c.start_ms, c.end_ms) for c in chunks] == [
        (monday - 5 * HOUR, monday),
        (monday, monday + 7 * DAY),
        (monday + 7 * DAY, monday + 8 * DAY + 3 * HOUR),
    ]
    funding = Hole(
        gaps.gap_dataset("funding_rates"), "BTCUSDT", monday - DAY + 1, monday + DAY, 5, monday - DAY, monday + DAY + 1
    )
    parts = gaps.chunk_holes([funding], 7 * DAY)
    assert [(c.start_ms, c.end_ms) for c in parts] == [(monday - DAY + 1, monday), (monday, monday + DAY)]
    assert all((c.ctx_start_ms, c.ctx_end_ms) == (monday - DAY, monday + DAY + 1) for c in parts)
    agg = Hole(gaps.gap_dataset("agg_trades"), "BTCUSDT", monday - HOUR, monday + HOUR, 9, monday - HOUR, monday + HOUR)
    assert [(c.start_ms, c.end_ms) for c in gaps.chunk_holes([agg], 7 * DAY)] == [(monday - HOUR, monday + HOUR)]
    long_agg = replace(agg, end_ms=monday + 8 * DAY, ctx_end_ms=monday + 8 * DAY)
    assert len(gaps.chunk_holes([long_agg], 7 * DAY)) == 1  # longer than a chunk: still one (ids have no grid)
    for c in chunks + parts:
        assert Chunk.parse(c.spec()) == c


def test_groups_never_exceed_the_mapped_task_cap() -> None:
    chunks = [
        Chunk(gaps.gap_dataset("klines_m5"), "BTCUSDT", i * M5, (i + 1) * M5, i * M5, (i + 1) * M5) for i in range(5000)
    ]
    groups = gaps.group_chunks(chunks, 512)
    assert len(groups) == 512
    assert [c for g in groups for c in g] == chunks
    assert max(map(len, groups)) - min(map(len, groups)) <= 1
    assert len(gaps.group_chunks(chunks[:7], 512)) == 7
    assert len(gaps.group_chunks(chunks, 5000)) == gaps.MAX_MAP_LENGTH  # Airflow's max_map_length wins
    with pytest.raises(gaps.InputError, match="max_mapped_tasks"):
        GapSettings.load(max_mapped_tasks=2000)
    with pytest.raises(gaps.InputError, match="min_gap"):
        GapSettings.load(min_gap=0)


def test_bad_chunk_and_table_are_input_errors() -> None:
    for spec in (
        "klines_m5/BTCUSDT/2024-01-02",
        "trades/BTCUSDT/2024-01-01/2024-01-02",
        "klines_m5/X/2024-01-02/2024-01-01",
    ):
        with pytest.raises(gaps.InputError):
            Chunk.parse(spec)
    with pytest.raises(gaps.InputError, match="unknown table"):
        gaps.parse_tables(["nope"])
    assert [d.table for d in gaps.parse_tables(["m5,funding_rates", "1h"])] == [
        "klines_m5",
        "funding_rates",
        "klines_h1",
    ]


# --------------------------------------------------------------------------------------------- klines on every sink


def test_kline_holes_at_start_middle_end_across_chunks_on_each_sink(
    store: str, emulator: Emulator, client: BinanceFuturesClient
) -> None:
    m = midnight()
    span = 3 * HOUR if store == "mongo" else 12 * HOUR  # Mongo's wire server is slow: keep its data tiny
    start, end = m - span, m + span
    write(store, ["klines", "--interval", "5m", "--source", "rest"], ["BTCUSDT", "ETHUSDT"], start, end)
    write(store, ["klines", "--interval", "1h", "--source", "rest"], ["BTCUSDT"], start, end)
    sinks = open_sinks([store])
    try:
        clean = gaps.scan(
            sinks, gaps.parse_tables(["klines_m5", "klines_h1"]), start=ms_to_dt(start), end=ms_to_dt(end)
        )
        assert all(not s.holes and s.completeness == 1.0 for s in clean) and len(clean) == 3
        (sink,) = sinks
        assert delete(sink, "klines_m5", "BTCUSDT", start, start + 15 * MIN) == 3  # head
        assert delete(sink, "klines_m5", "BTCUSDT", m - 30 * MIN, m + 30 * MIN) == 12  # across a chunk boundary
        assert delete(sink, "klines_m5", "BTCUSDT", end - 20 * MIN, end) == 4  # tail
        assert delete(sink, "klines_m5", "ETHUSDT", m + HOUR, m + HOUR + M5) == 1
        assert delete(sink, "klines_h1", "BTCUSDT", m - 2 * HOUR, m) == 2
        settings = GapSettings(chunk_days=1)
        scans = gaps.scan(
            sinks,
            gaps.parse_tables(["klines_m5", "klines_h1"]),
            start=ms_to_dt(start),
            end=ms_to_dt(end),
            settings=settings,
        )
        assert spans(scans) == {
            ("klines_m5", "BTCUSDT"): [
                (start, start + 15 * MIN, 3),
                (m - 30 * MIN, m + 30 * MIN, 12),
                (end - 20 * MIN, end, 4),
            ],
            ("klines_m5", "ETHUSDT"): [(m + HOUR, m + HOUR + M5, 1)],
            ("klines_h1", "BTCUSDT"): [(m - 2 * HOUR, m, 2)],
        }
        btc = next(s for s in scans if s.symbol == "BTCUSDT" and s.table == "klines_m5")
        expected = 2 * span // M5
        assert (btc.stored, btc.missing) == (expected - 19, 19)
        assert btc.completeness == pytest.approx((expected - 19) / expected)

        chunks = gaps.chunk_holes(gaps.holes_of(scans), settings.chunk_ms)
        assert len(chunks) == 6  # the midnight hole is two daily chunks
        assert [(c.start_ms, c.end_ms) for c in chunks if c.start_ms == m - 30 * MIN or c.start_ms == m][:2] == [
            (m - 30 * MIN, m),
            (m, m + 30 * MIN),
        ]
        emulator.reset_stats()
        results = gaps.fill_chunks(chunks, sinks, client, source="rest", settings=settings)
        assert [r.error for r in results] == [None] * 6
        assert sum(r.filled for r in results) == 6 and sum(r.confirmed for r in results) == 0
        assert emulator.count(KLINES) >= 6
        assert gaps.verify(chunks, sinks, [r.to_dict() for r in results], settings) == []
        after = gaps.scan(
            sinks,
            gaps.parse_tables(["klines_m5", "klines_h1"]),
            start=ms_to_dt(start),
            end=ms_to_dt(end),
            settings=settings,
        )
        assert all(not s.holes and s.completeness == 1.0 for s in after)
        stored = sink.read(KLINES_M5, "BTCUSDT", ms_to_dt(start), ms_to_dt(end))
        source = emulator.klines_rows("BTCUSDT", "5m", start, end - 1)
        assert [(dt_to_ms(r["open_time"]), r["close"]) for r in stored] == [(int(r[0]), Decimal(r[4])) for r in source]

        emulator.reset_stats()  # a re-run after success does nothing
        again = gaps.fill_chunks(chunks, sinks, client, source="rest", settings=settings)
        assert emulator.count() == 0
        assert sum(r.found for r in again) == 0
    finally:
        for s in sinks:
            s.close()


@at_instants
def test_size_filters_skip_small_and_large_holes(sqlite_store: str, emulator: Emulator) -> None:
    m = midnight()
    write(sqlite_store, ["klines", "--interval", "5m", "--source", "rest"], ["BTCUSDT"], m, m + 6 * HOUR)
    (sink,) = open_sinks([sqlite_store])
    try:
        delete(sink, "klines_m5", "BTCUSDT", m + HOUR, m + HOUR + M5)  # 1 candle
        delete(sink, "klines_m5", "BTCUSDT", m + 2 * HOUR, m + 2 * HOUR + 3 * M5)  # 3 candles
        delete(sink, "klines_m5", "BTCUSDT", m + 3 * HOUR, m + 4 * HOUR)  # 12 candles
        (scan,) = gaps.scan(
            [sink],
            gaps.parse_tables(["klines_m5"]),
            end=ms_to_dt(m + 6 * HOUR),
            settings=GapSettings(min_gap=2, max_gap=10),
        )
        assert [h.missing for h in scan.holes] == [3]
        assert sorted(h.missing for h in scan.skipped) == [1, 12]
        assert scan.missing == 16
    finally:
        sink.close()


# --------------------------------------------------------------------------------------------- exchange outages


@at_instants
def test_exchange_outage_is_confirmed_once_and_never_requested_again(
    sqlite_store: str, emulator: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    m = midnight()
    start, end = m, m + 4 * HOUR
    out_lo, out_hi = m + HOUR, m + HOUR + 30 * MIN  # the exchange has no candle opening in [out_lo, out_hi)
    emulator.add_outage("BTCUSDT", out_lo, out_hi - 1)
    write(sqlite_store, ["klines", "--interval", "5m", "--source", "rest"], ["BTCUSDT"], start, end)
    (sink,) = open_sinks([sqlite_store])
    try:
        delete(sink, "klines_m5", "BTCUSDT", m + 50 * MIN, out_lo)  # a hole of ours next to the exchange's
    finally:
        sink.close()
    argv = ["fill-gaps", "--table", "klines_m5", "--symbols", "BTCUSDT", "--end", iso(ms_to_dt(end))]
    argv += ["--sink", "sqlite", "--source", "auto", "--requested-by", "test-run-1"]
    emulator.reset_stats()
    with telemetry.capture() as cap:
        (report,) = cli.execute(argv)
        assert cap.value("binance.gaps", state="found", table="klines_m5") == 1
        assert cap.value("binance.gaps", state="confirmed", table="klines_m5") == 1
        assert cap.value("binance.completeness", table="klines_m5", symbol="BTCUSDT") == 1.0
    first_requests = emulator.count()
    assert first_requests > 0
    totals = report["totals"]
    assert (totals["found"], totals["confirmed"], totals["remaining"]) == (1, 1, 0)
    (row,) = report["symbols"]
    assert row["known_exchange_side"] == 1 and row["completeness"] == 1.0
    (sink,) = open_sinks([sqlite_store])
    try:
        assert sink.known_gaps(KLINES_M5, "BTCUSDT") == [(ms_to_dt(out_lo), ms_to_dt(out_hi))]
        (ledger,) = sink._tx(
            lambda cur: (
                cur.execute("SELECT checked_by, method, requests, confirmed_at FROM gap_ledger"),
                cur.fetchall(),
            )[1],
            write=False,
        )
        assert ledger[0] == "test-run-1" and ledger[1] == "refetch:auto" and 0 < ledger[2] <= first_requests
        assert sink.count(KLINES_M5, "BTCUSDT", ms_to_dt(m + 50 * MIN), ms_to_dt(out_lo)) == 2  # ours: filled
    finally:
        sink.close()

    emulator.reset_stats()
    (report2,) = cli.execute([*argv[:-1], "test-run-2"])
    assert emulator.count(KLINES) == 0  # the confirmed hole is not fetched again ...
    assert emulator.count() == emulator.count(TIME) == 1  # ... only the exchange's clock is read (what is closed)
    assert report2["totals"]["found"] == 0 and report2["symbols"][0]["known_exchange_side"] == 1
    assert cli.main(["gaps", "--table", "klines_m5", "--sink", "sqlite", "--end", iso(ms_to_dt(end))]) == 0
    assert json_lines(capsys.readouterr().out) == []
    assert emulator.count() == emulator.count(TIME) == 2


# --------------------------------------------------------------------------------------------- closure failure


@pytest.mark.mysql
def test_mysql_detection_is_an_index_range_scan_returning_only_holes(mysql_conn_id: str, emulator: Emulator) -> None:
    m = midnight()
    write("mysql", ["klines", "--interval", "5m", "--source", "rest"], ["BTCUSDT", "ETHUSDT"], m, m + 4 * HOUR)
    (sink,) = open_sinks(["mysql"])
    try:
        delete(sink, "klines_m5", "BTCUSDT", m + HOUR, m + HOUR + 2 * M5)
        queries = sink.gap_queries()
        assert isinstance(queries, SqlGapQueries) and isinstance(sink, SqlStore)
        args = ["BTCUSDT", sink.db_time(ms_to_dt(m)), sink.db_time(ms_to_dt(m + 4 * HOUR)), M5]
        assert sink.query(queries.kline_sql(KLINES_M5), args) == [
            (ms_to_dt(m + HOUR - M5).replace(tzinfo=None), ms_to_dt(m + HOUR + 2 * M5).replace(tzinfo=None))
        ]  # one row per hole comes back, never the table
        plan = sink.query("EXPLAIN " + queries.kline_sql(KLINES_M5), args)
        columns = ["id", "select_type", "table", "type", "possible_keys", "key", "key_len", "ref", "rows", "Extra"]
        scans = [dict(zip(columns, row, strict=False)) for row in plan if row[2] == "klines_m5"]
        assert scans and all(s["key"] == "PRIMARY" and s["type"] == "range" for s in scans), plan
    finally:
        sink.close()


@pytest.fixture
def readonly_mysql(
    mysql_database: str, mysql_conn_id: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, str]]:
    """A MariaDB user that may read (and CREATE IF NOT EXISTS) but not write: real write failures."""
    user, password = f"bx_ro_{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    admin = mysql_admin()
    cur = admin.cursor()
    for host in ("%", "localhost", "127.0.0.1"):
        cur.execute(f"CREATE USER '{user}'@'{host}' IDENTIFIED BY '{password}'")
        cur.execute(f"GRANT SELECT, CREATE ON `{mysql_database}`.* TO '{user}'@'{host}'")
    monkeypatch.setenv("AIRFLOW_CONN_MYSQL_RO", f"mysql://{user}:{password}@127.0.0.1:3306/{mysql_database}")
    try:
        yield "mysql_ro", password
    finally:
        for host in ("%", "localhost", "127.0.0.1"):
            cur.execute(f"DROP USER IF EXISTS '{user}'@'{host}'")
        admin.close()


@pytest.mark.mysql
def test_closure_failure_when_the_exchange_has_data_but_the_write_fails(
    readonly_mysql: tuple[str, str], emulator: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    conn_id, password = readonly_mysql
    m = midnight()
    start, end = m, m + 2 * HOUR
    write("mysql", ["klines", "--interval", "5m", "--source", "rest"], ["BTCUSDT"], start, end)
    (sink,) = open_sinks(["mysql"])
    try:
        delete(sink, "klines_m5", "BTCUSDT", m + 30 * MIN, m + 45 * MIN)
    finally:
        sink.close()
    argv = ["fill-gaps", "--table", "klines_m5", "--end", iso(ms_to_dt(end)), "--sink", "mysql"]
    argv += ["--conn-id", conn_id, "--source", "rest"]
    with pytest.raises(GapClosureError) as info:
        cli.execute(argv)
    message = str(info.value)
    hole = f"klines_m5 BTCUSDT [{iso(ms_to_dt(m + 30 * MIN))}, {iso(ms_to_dt(m + 45 * MIN))})"
    assert hole in message and "fill failed" in message and "command denied" in message
    assert emulator.count(KLINES) >= 1  # the exchange answered with the candles
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]  # logs go to stderr too; the error is the last line
    assert last.startswith("error: gap closure failed") and hole in last and password not in err
    (sink,) = open_sinks(["mysql"])
    try:
        assert sink.known_gaps(KLINES_M5, "BTCUSDT") == []  # nothing confirmed: the exchange has the data
        assert sink.count(KLINES_M5, "BTCUSDT", ms_to_dt(m + 30 * MIN), ms_to_dt(m + 45 * MIN)) == 0
    finally:
        sink.close()


# --------------------------------------------------------------------------------------------- funding and agg trades


@at_instants  # a weekly chunk boundary (Monday 00:00) inside a funding hole once made the refill "confirm" it
def test_funding_holes_follow_each_contracts_interval(
    store: str, emulator: Emulator, client: BinanceFuturesClient
) -> None:
    m = dt_to_ms(datetime(2025, 11, 26, tzinfo=UTC))  # a Wednesday: no weekly chunk boundary splits a hole
    start, end = m - 24 * HOUR, m + 12 * HOUR
    symbols = ["BTCUSDT", "1000PEPEUSDT", "ETHUSDT"]  # 1h, 4h and 8h funding in the emulator
    write(store, ["funding"], symbols, start, end)
    sinks = open_sinks([store])
    try:
        (sink,) = sinks
        before = {s: sink.count(FUNDING_RATES, s) for s in symbols}
        clean = gaps.scan(sinks, gaps.parse_tables(["funding_rates"]), end=ms_to_dt(end))
        assert [s.holes for s in clean] == [[], [], []]  # 1h, 4h and 8h spacing are not holes
        assert delete(sink, "funding_rates", "BTCUSDT", m + 2 * HOUR, m + 5 * HOUR) == 3
        assert delete(sink, "funding_rates", "1000PEPEUSDT", m, m + HOUR) == 1
        assert delete(sink, "funding_rates", "ETHUSDT", m, m + HOUR) == 1
        scans = {s.symbol: s for s in gaps.scan(sinks, gaps.parse_tables(["funding_rates"]), end=ms_to_dt(end))}
        assert {s: [h.missing for h in scans[s].holes] for s in symbols} == {
            "BTCUSDT": [3],
            "1000PEPEUSDT": [1],
            "ETHUSDT": [1],
        }
        btc = scans["BTCUSDT"].holes[0]
        assert m + HOUR < btc.start_ms <= m + HOUR + 16 and m + 5 * HOUR <= btc.end_ms <= m + 5 * HOUR + 16
        chunks = gaps.chunk_holes(gaps.holes_of(scans.values()), DAY * 7)
        results = gaps.fill_chunks(chunks, sinks, client)
        assert [r.error for r in results] == [None] * len(chunks) and sum(r.confirmed for r in results) == 0
        assert {s: sink.count(FUNDING_RATES, s) for s in symbols} == before
        assert gaps.holes_of(gaps.scan(sinks, gaps.parse_tables(["funding_rates"]), end=ms_to_dt(end))) == []
    finally:
        for s in sinks:
            s.close()


def test_agg_trade_id_holes_are_refetched_between_neighbours(
    sqlite_store: str, emulator: Emulator, client: BinanceFuturesClient
) -> None:
    aggs = emulator.real.agg_trades["XRPETH"]
    t0 = aggs[0]["T"]
    write(sqlite_store, ["trades", "--kind", "agg"], ["XRPETH"], t0, t0 + HOUR)
    sinks = open_sinks([sqlite_store])
    try:
        (sink,) = sinks
        n = sink.count(AGG_TRADES, "XRPETH")
        first_id = aggs[0]["a"]
        assert n > 60
        assert delete(sink, "agg_trades", "XRPETH", first_id + 20, first_id + 30, column="agg_trade_id") == 10
        assert delete(sink, "agg_trades", "XRPETH", first_id + 40, first_id + 41, column="agg_trade_id") == 1
        (scan,) = gaps.scan(sinks, gaps.parse_tables(["agg_trades"]))
        assert [h.missing for h in scan.holes] == [10, 1]
        by_id = {a["a"]: a["T"] for a in aggs}
        assert (scan.holes[0].start_ms, scan.holes[0].end_ms) == (by_id[first_id + 19], by_id[first_id + 30] + 1)
        assert scan.stored == n - 11
        results = gaps.fill_chunks(gaps.chunk_holes(scan.holes, 7 * DAY), sinks, client)
        assert [r.error for r in results] == [None, None] and sum(r.filled for r in results) == 2
        assert sink.count(AGG_TRADES, "XRPETH") == n
        assert gaps.holes_of(gaps.scan(sinks, gaps.parse_tables(["agg_trades"]))) == []
    finally:
        for s in sinks:
            s.close()


@pytest.mark.parametrize("chunk_ms", [7 * DAY, 2 * MIN], ids=["weekly", "hole-longer-than-a-chunk"])
def test_agg_trade_hole_across_a_weekly_boundary_is_filled_not_confirmed(
    sqlite_store: str, emulator: Emulator, client: BinanceFuturesClient, chunk_ms: int
) -> None:
    """A hole spanning Monday 00:00 UTC (and one longer than a chunk) is one chunk: a piece cut at a chunk boundary
    would be "confirmed" exchange-side before the next piece fills the ids that lie after the boundary."""
    monday = dt_to_ms(datetime(2025, 6, 2, tzinfo=UTC))
    write(sqlite_store, ["trades", "--kind", "agg"], ["SYNTHUSDT"], monday - 20 * MIN, monday + 20 * MIN)
    sinks = open_sinks([sqlite_store])
    try:
        (sink,) = sinks
        n = sink.count(AGG_TRADES, "SYNTHUSDT")
        assert delete(sink, "agg_trades", "SYNTHUSDT", monday - 5 * MIN, monday + 5 * MIN) > 0
        (scan,) = gaps.scan(sinks, gaps.parse_tables(["agg_trades"]))
        chunks = gaps.chunk_holes(scan.holes, chunk_ms)
        assert len(scan.holes) == 1 and scan.holes[0].end_ms - scan.holes[0].start_ms > 2 * MIN
        results = gaps.fill_chunks(chunks, sinks, client)
        assert [r.error for r in results] == [None] * len(chunks) and sum(r.confirmed for r in results) == 0
        assert len(chunks) == 1 and chunks[0].start_ms < monday < chunks[0].end_ms
        assert sink.count(AGG_TRADES, "SYNTHUSDT") == n
        assert sink.known_gaps(AGG_TRADES, "SYNTHUSDT") == []
        assert gaps.holes_of(gaps.scan(sinks, gaps.parse_tables(["agg_trades"]))) == []
    finally:
        for s in sinks:
            s.close()


# --------------------------------------------------------------------------------------------- many holes, CLI


@at_instants
def test_many_holes_stay_under_the_mapped_task_cap(sqlite_store: str, emulator: Emulator) -> None:
    m = midnight()
    start, end = m, m + 6 * HOUR
    write(sqlite_store, ["klines", "--interval", "5m", "--source", "rest"], ["BTCUSDT"], start, end)
    (sink,) = open_sinks([sqlite_store])
    try:
        sink._tx(lambda cur: cur.execute("DELETE FROM klines_m5 WHERE (open_time / 300000) % 2 = 1"))
        (scan,) = gaps.scan([sink], gaps.parse_tables(["klines_m5"]), start=ms_to_dt(start), end=ms_to_dt(end))
    finally:
        sink.close()
    assert len(scan.holes) == 36
    settings = GapSettings(max_mapped_tasks=5)
    groups = gaps.plan_groups(scan.holes, settings)
    assert len(groups) == 5 and sum(map(len, groups)) == 36
    specs = [gap_tasks.fill_spec(g, source="rest", sinks=["sqlite"], requested_by="test") for g in groups]
    argvs = [s.to_argv() for s in specs]
    planned = [s.task_kwargs(pod=False) for s in specs]
    assert gap_tasks.chunks_of_specs(json.loads(json.dumps(planned))) == [c for g in groups for c in g]
    assert argvs[0][:3] == ["fill-gaps", "--chunk", groups[0][0].spec()]
    emulator.reset_stats()
    (report,) = cli.execute(argvs[0])
    assert report["totals"]["found"] == len(groups[0]) and report["totals"]["filled"] == len(groups[0])
    assert report["totals"]["remaining"] == 0 and emulator.count(KLINES) == len(groups[0])
    (sink,) = open_sinks([sqlite_store])
    try:
        (left,) = gaps.scan([sink], gaps.parse_tables(["klines_m5"]), start=ms_to_dt(start), end=ms_to_dt(end))
        assert len(left.holes) == 36 - len(groups[0])
    finally:
        sink.close()


def test_cli_lists_holes_as_json_and_rejects_bad_input(
    sqlite_store: str, emulator: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    m = midnight()
    write(sqlite_store, ["klines", "--interval", "1h", "--source", "rest"], ["BTCUSDT", "ETHUSDT"], m, m + 12 * HOUR)
    (sink,) = open_sinks([sqlite_store])
    try:
        delete(sink, "klines_h1", "ETHUSDT", m + 3 * HOUR, m + 5 * HOUR)
    finally:
        sink.close()
    capsys.readouterr()
    emulator.reset_stats()
    assert cli.main(["gaps", "--table", "h1", "--sink", "sqlite", "--end", iso(ms_to_dt(m + 12 * HOUR))]) == 0
    lines = json_lines(capsys.readouterr().out)
    assert lines == [
        {
            "table": "klines_h1",
            "symbol": "ETHUSDT",
            "start": iso(ms_to_dt(m + 3 * HOUR)),
            "end": iso(ms_to_dt(m + 5 * HOUR)),
            "missing": 2,
            "context": [iso(ms_to_dt(m + 3 * HOUR)), iso(ms_to_dt(m + 5 * HOUR))],
            "status": "open",
        }
    ]
    bad = [
        ["gaps", "--table", "trades"],
        ["gaps", "--table", "klines_m5", "--min-gap", "0"],
        ["gaps", "--table", "klines_m5", "--sink", "jsonl", "--output", "-"],
        ["gaps", "--table", "klines_m5", "--start", "yesterday"],
        ["fill-gaps", "--chunk", "klines_m5/BTCUSDT/2024-01-02/2024-01-01"],
        ["fill-gaps", "--chunk", "klines_m5/BTCUSDT/2024-01-01/2024-01-02", "--table", "klines_m5"],
    ]
    for argv in bad:
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.startswith("error: "), argv
    assert emulator.count() == emulator.count(TIME) == 1  # listing holes reads only the exchange's clock, once;
    # rejecting input never touches the exchange


def test_full_history_counts_the_missing_start_from_the_listing_date(
    sqlite_store: str, emulator: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    m = midnight()
    onboard = emulator.symbols["NEWUSDT"].onboard_ms  # listed 10 days ago at 08:00
    write(sqlite_store, ["klines", "--interval", "1h", "--source", "rest"], ["NEWUSDT"], m, m + 6 * HOUR)
    capsys.readouterr()
    argv = ["gaps", "--table", "klines_h1", "--sink", "sqlite", "--end", iso(ms_to_dt(m + 6 * HOUR))]
    assert cli.main(argv) == 0
    assert json_lines(capsys.readouterr().out) == []  # from the first stored candle on, nothing is missing
    assert cli.main([*argv, "--full-history"]) == 0
    (hole,) = json_lines(capsys.readouterr().out)
    assert (hole["start"], hole["end"]) == (iso(ms_to_dt(onboard)), iso(ms_to_dt(m)))
    assert hole["missing"] == (m - onboard) // HOUR
