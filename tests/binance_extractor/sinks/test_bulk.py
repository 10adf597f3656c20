"""Bulk archive loads into every real store: the table equals what the REST path writes, re-runs change nothing,
changed candles are updated in place, and a load whose connection is lost mid-transaction (or whose process is
killed) leaves whole files only and converges on re-run.

The exchange emulator and the library share one fixed clock (2025-03-10 12:34:56.789 UTC): monthly files up to
2025-02 (microsecond timestamps from 2025-01, a header from 2022), daily files up to 2025-03-09.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from binance_extractor import clock, timeframes
from binance_extractor.errors import SinkError
from binance_extractor.kinds import DataKind, Dataset
from binance_extractor.models import Kline
from binance_extractor.pipeline import Job, run_job
from binance_extractor.timeutil import dt_to_ms, iso, parse_time
from tests.binance_extractor.sinks.conftest import new_sink
from tests.emulator import Emulator
from tests.fixtures.databases import TcpProxy

KLINES_M5 = Dataset.of_table("klines_m5")

ROOT = Path(__file__).resolve().parents[3]
NOW = dt_to_ms(parse_time("2025-03-10T12:34:56.789Z"))
SYMBOL = "BTCUSDT"
FAR = datetime(2100, 1, 1, tzinfo=UTC)


@pytest.fixture
def fixed() -> Iterator[clock.FixedClock]:
    clk = clock.FixedClock(NOW)
    with clock.using(clk):
        yield clk


@pytest.fixture
def emu(make_emulator: Callable[..., Emulator], fixed: clock.FixedClock) -> Emulator:
    return make_emulator(clock=fixed)


def span(kind: str) -> tuple[datetime, datetime]:
    """Daily files, a header+us monthly file and more daily files; Mongo's wire server is slow: daily files only."""
    if kind == "mongo":
        return parse_time("2025-02-26T00:00:00Z"), parse_time("2025-03-02T00:00:00Z")
    return parse_time("2024-12-30T00:00:00Z"), parse_time("2025-02-03T00:00:00Z")


def job(start: datetime, end: datetime, source: str) -> Job:
    return Job(DataKind.KLINES, SYMBOL, timeframes.parse("5m"), start, end, source=source)


def table(sink: Any) -> list[dict[str, Any]]:
    return list(sink.read(KLINES_M5, SYMBOL))


def expected(emu: Emulator, start: datetime, end: datetime) -> list[Kline]:
    rows = emu.klines_rows(SYMBOL, "5m", dt_to_ms(start), dt_to_ms(end) - 1)
    return [Kline.from_rest(SYMBOL, "5m", r) for r in rows]


def test_archive_bulk_load_equals_the_rest_path(store: tuple[str, str], emu: Emulator, client: Any) -> None:
    kind, conn_id = store
    start, end = span(kind)
    sink = new_sink(kind, conn_id)
    try:
        sink.ensure_schema()
        bulk = run_job(job(start, end, "archive"), [sink], client)
        assert emu.count("/fapi/v1/klines") == 0  # every candle came from archive files
        from_archive = table(sink)
        assert len(from_archive) == bulk.rows_written == len(expected(emu, start, end))
        assert [Kline(**r) for r in from_archive] == expected(emu, start, end)

        again = run_job(job(start, end, "archive"), [sink], client)  # idempotent
        assert again.rows_written == bulk.rows_written and table(sink) == from_archive

        while sink.delete_before(KLINES_M5, FAR, limit=100_000):
            pass
        assert sink.count(KLINES_M5) == 0
        rest = run_job(job(start, end, "rest"), [sink], client)
        assert emu.count("/fapi/v1/klines") > 0 and rest.rows_written == bulk.rows_written
        assert table(sink) == from_archive  # the same table, value for value, whichever path wrote it
    finally:
        sink.close()


def test_changed_candles_are_updated_in_place(store: tuple[str, str], emu: Emulator, client: Any) -> None:
    kind, conn_id = store
    start, end = span(kind)
    sink = new_sink(kind, conn_id)
    try:
        sink.ensure_schema()
        run_job(job(start, end, "archive"), [sink], client)
        before = table(sink)
        changed = dt_to_ms(end) - 86_400_000 + 3_600_000
        row = emu.klines_rows(SYMBOL, "5m", changed, changed)[0]
        emu.set_kline_override(SYMBOL, "5m", changed, [*row[:5], "123456.000000001", *row[6:]])
        run_job(job(start, end, "archive"), [sink], client)
        after = table(sink)
        assert len(after) == len(before)
        diff = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
        assert len(diff) == 1 and dt_to_ms(diff[0][1]["open_time"]) == changed
        assert str(diff[0][1]["volume"].normalize()) == "123456.000000001"
    finally:
        sink.close()


class _CutBeforeUpsert:
    """Wraps a DB-API connection: cuts the TCP proxy mid-transaction in the ``n``-th archive file's load. Staged
    path (the file's range already holds candles): right before the upsert from the stage. Direct path (an empty
    range, loaded straight into the table): right after the range probe, so the LOAD DATA / COPY loses it."""

    def __init__(self, conn: Any, proxy: TcpProxy, n: int, seen: list[int], direct: bool = False) -> None:
        self._conn, self._proxy, self._n, self._seen, self._direct = conn, proxy, n, seen, direct

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def cursor(self, *a: Any, **kw: Any) -> Any:
        cur = self._conn.cursor(*a, **kw)
        outer = self

        def count_and_cut() -> None:
            outer._seen.append(1)
            if len(outer._seen) == outer._n:
                outer._proxy.cut()

        class Cursor:
            def __getattr__(self, name: str) -> Any:
                return getattr(cur, name)

            def __enter__(self) -> Any:
                return self

            def __exit__(self, *exc: object) -> None:
                cur.close()

            def execute(self, sql: str, *args: Any) -> Any:
                if not outer._direct and sql.startswith("INSERT INTO") and "SELECT" in sql and "_bx_stage_" in sql:
                    count_and_cut()
                out = cur.execute(sql, *args)
                if outer._direct and sql.startswith("SELECT 1 FROM") and "BETWEEN" in sql:
                    count_and_cut()
                return out

        return Cursor()


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "staged"])
@pytest.mark.parametrize(
    "proxied",
    [pytest.param("mysql", marks=pytest.mark.mysql), pytest.param("postgres", marks=pytest.mark.postgres)],
    indirect=True,
)
def test_load_interrupted_mid_transaction_leaves_whole_files_and_converges(
    proxied: tuple[str, str, TcpProxy], emu: Emulator, client: Any, direct: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    kind, conn_id, proxy = proxied
    monkeypatch.setenv("BINANCE_EXTRACTOR_BULK_GROUP_ROWS", "1")  # a transaction per file: the fourth is cut alone
    start, end = parse_time("2025-02-20T00:00:00Z"), parse_time("2025-02-27T00:00:00Z")  # 7 daily files of 288
    seeded = expected(emu, start, end)[144::288]  # staged: one candle stored in each day's range already
    if not direct:
        seeder = new_sink(kind, conn_id)
        seeder.write(KLINES_M5, seeded)
        seeder.close()
    sink = new_sink(kind, conn_id, retry_attempts=1)
    seen: list[int] = []
    connect = sink._connect
    sink._connect = lambda: _CutBeforeUpsert(connect(), proxy, 4, seen, direct)  # type: ignore[method-assign]
    try:
        with pytest.raises(SinkError) as err:
            run_job(job(start, end, "archive"), [sink], client)
        assert f"{kind} sink (127.0.0.1:{proxy.port}/" in str(err.value) and "\n" not in str(err.value)
    finally:
        sink.close()
    proxy.start()  # the database is back
    check = new_sink(kind, conn_id)
    try:
        # three files committed, the fourth rolled back whole (the seeded candles of days 4..7 stay)
        assert check.count(KLINES_M5, SYMBOL) == 3 * 288 + (0 if direct else 4)
        result = run_job(job(start, end, "archive"), [check], client)
        assert result.outcome == "success"
        assert [Kline(**r) for r in table(check)] == expected(emu, start, end)
    finally:
        check.close()


def test_json_lines_get_the_same_candles_through_the_models(tmp_path: Any, emu: Emulator, client: Any) -> None:
    from binance_extractor.sinks.jsonl import JsonlSink

    start, end = parse_time("2025-02-26T00:00:00Z"), parse_time("2025-03-02T00:00:00Z")
    paths = {source: tmp_path / f"{source}.jsonl" for source in ("archive", "rest")}
    for source, path in paths.items():
        sink = JsonlSink(path)
        try:
            assert run_job(job(start, end, source), [sink], client).rows_written == 4 * 288
        finally:
            sink.close()
    archive_lines = paths["archive"].read_text().splitlines()
    assert archive_lines == paths["rest"].read_text().splitlines() and len(archive_lines) == 4 * 288


def test_cli_killed_mid_archive_load_then_rerun_completes(
    store: tuple[str, str], make_emulator: Callable[..., Emulator]
) -> None:
    """A backfill process killed (SIGKILL) while bulk-loading archive files: SQL stores hold whole files only
    (one transaction per file here; per group of files by default), and a re-run of the range leaves every candle
    exactly once in every store."""
    kind, conn_id = store
    emu = make_emulator(latency=0.3)  # slow downloads so the kill lands mid-range (the CLI runs on the real clock)
    start = parse_time("2025-03-01T00:00:00Z")
    end = parse_time("2025-03-21T00:00:00Z") if kind != "mongo" else parse_time("2025-03-07T00:00:00Z")
    argv = [sys.executable, "-m", "binance_extractor", "klines", "--interval", "5m", "--symbols", SYMBOL]
    argv += ["--start", iso(start), "--end", iso(end), "--source", "archive", "--sink", kind, "--conn-id", conn_id]

    def stored() -> int:
        sink = new_sink(kind, conn_id)
        try:
            return int(sink.count(KLINES_M5, SYMBOL))
        except Exception:
            return 0  # the schema may not exist yet
        finally:
            sink.close()

    env = {**os.environ, "BINANCE_EXTRACTOR_BULK_GROUP_ROWS": "1"}  # a transaction per file, as a kill finds it
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)  # fmt: skip
    try:
        while proc.poll() is None and stored() == 0:
            time.sleep(0.05)
        assert proc.poll() is None, "the run finished before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.communicate(timeout=60)
    partial = stored()
    want = expected(emu, start, end)
    assert 0 < partial < len(want)
    if kind != "mongo":
        assert partial % 288 == 0, partial  # whole daily files only
    emu.latency = 0.0
    rerun = subprocess.run(argv, cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=240)
    assert rerun.returncode == 0, rerun.stderr[-500:]
    sink = new_sink(kind, conn_id)
    try:
        assert [Kline(**r) for r in table(sink)] == want
    finally:
        sink.close()
