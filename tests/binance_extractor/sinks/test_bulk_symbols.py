"""Several symbols of one archive run, the next one fetched while the current one loads (``lookahead``, #25), into
every real store: each symbol is its own job with its own transactions and audit row, in order; a failure in
symbol k leaves the symbols before it committed, rolls symbol k's group back whole, and a re-run converges.

The exchange emulator and the library share one fixed clock (2025-03-10 12:34:56.789 UTC): daily files up to
2025-03-09.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest

from binance_extractor import cli, clock, timeframes
from binance_extractor.archive import ArchiveError
from binance_extractor.errors import SinkError
from binance_extractor.kinds import DataKind, Dataset
from binance_extractor.lookahead import Lookahead, lookahead_for
from binance_extractor.models import Kline
from binance_extractor.pipeline import Job, run_job
from binance_extractor.symbol_batch import BatchOutcome, run_batch
from binance_extractor.timeutil import dt_to_ms, iso, parse_time
from tests.binance_extractor.sinks.conftest import new_sink
from tests.emulator import Emulator
from tests.fixtures.databases import TcpProxy

KLINES_M5 = Dataset.of_table("klines_m5")
M5 = timeframes.parse("5m")
NOW = dt_to_ms(parse_time("2025-03-10T12:34:56.789Z"))
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
START, END = parse_time("2025-02-20T00:00:00Z"), parse_time("2025-02-24T00:00:00Z")  # 4 daily files of 288
PER_SYMBOL = 4 * 288


@pytest.fixture
def emu(make_emulator: Callable[..., Emulator]) -> Iterator[Emulator]:
    with clock.using(clock.FixedClock(NOW)) as clk:
        yield make_emulator(clock=clk)


def expected(emu: Emulator, symbol: str, start: datetime = START, end: datetime = END) -> list[Kline]:
    rows = emu.klines_rows(symbol, "5m", dt_to_ms(start), dt_to_ms(end) - 1)
    return [Kline.from_rest(symbol, "5m", r) for r in rows]


def stored(sink: Any, symbol: str) -> list[Kline]:
    return [Kline(**r) for r in sink.read(KLINES_M5, symbol)]


def run_symbols(sinks: list[Any], client: Any, *, keep_going: bool) -> tuple[BatchOutcome, Lookahead]:
    """What ``klines --source archive --symbols A,B,C`` runs: the jobs in order, each looking one ahead."""
    jobs = [Job(DataKind.KLINES, s, M5, START, END, source="archive") for s in SYMBOLS]
    ahead = lookahead_for(jobs, client)
    assert ahead is not None
    try:
        outcome = run_batch(
            jobs,
            sinks,
            lambda job: run_job(job, sinks, client, ahead=ahead),
            skip_succeeded=False,
            keep_going=keep_going,
        )
    finally:
        ahead.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("binance-lookahead")]  # nothing left running
    return outcome, ahead


def test_symbols_load_in_order_each_prefetched_with_its_own_audit_row(
    store: tuple[str, str], emu: Emulator, client: Any
) -> None:
    kind, conn_id = store
    sink = new_sink(kind, conn_id)
    try:
        sink.ensure_schema()
        outcome, ahead = run_symbols([sink], client, keep_going=False)
        assert [(r.symbol, r.outcome, r.rows_written) for r in outcome.results] == [
            (s, "success", PER_SYMBOL) for s in SYMBOLS
        ]
        assert ahead.claimed == len(SYMBOLS) - 1  # every symbol after the first took pages fetched ahead
        for symbol in SYMBOLS:
            assert stored(sink, symbol) == expected(emu, symbol)
            runs = sink.recent_runs(KLINES_M5, symbol, 10)
            assert [(r.outcome, r.rows_written, r.range_start, r.range_end) for r in runs] == [
                ("success", PER_SYMBOL, START, END)
            ]

        again, _ = run_symbols([sink], client, keep_going=False)  # idempotent: a re-run converges
        assert [r.rows_written for r in again.results] == [PER_SYMBOL] * len(SYMBOLS)
        for symbol in SYMBOLS:
            assert stored(sink, symbol) == expected(emu, symbol)
    finally:
        sink.close()


def test_a_corrupt_file_fails_its_own_symbol_only(store: tuple[str, str], emu: Emulator, client: Any) -> None:
    """The prefetched source raises in the job of the symbol it belongs to; with --keep-going the next symbol
    still loads; one audit row per symbol, the failed one naming the file."""
    kind, conn_id = store
    bad = "ETHUSDT-5m-2025-02-20.zip"
    emu.archive_corrupt = {bad}  # type: ignore[attr-defined]
    sink = new_sink(kind, conn_id)
    try:
        sink.ensure_schema()
        outcome, _ = run_symbols([sink], client, keep_going=True)
        assert [r.symbol for r in outcome.results] == ["BTCUSDT", "SOLUSDT"]
        assert isinstance(outcome.failures["ETHUSDT"], ArchiveError) and bad in str(outcome.failures["ETHUSDT"])
        assert stored(sink, "BTCUSDT") == expected(emu, "BTCUSDT")
        assert stored(sink, "ETHUSDT") == []
        assert stored(sink, "SOLUSDT") == expected(emu, "SOLUSDT")
        audit = {s: sink.recent_runs(KLINES_M5, s, 10) for s in SYMBOLS}
        assert {s: [r.outcome for r in runs] for s, runs in audit.items()} == {
            "BTCUSDT": ["success"],
            "ETHUSDT": ["failed"],
            "SOLUSDT": ["success"],
        }
        assert bad in (audit["ETHUSDT"][0].error or "")
    finally:
        sink.close()


class _CutAtSymbol:
    """Wraps a DB-API connection: cuts the TCP proxy right after ``symbol``'s first range probe (the one before its
    first group's load), so that load and its commit are lost mid-transaction."""

    def __init__(self, conn: Any, proxy: TcpProxy, symbol: str) -> None:
        self._conn, self._proxy, self._symbol = conn, proxy, symbol

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def cursor(self, *a: Any, **kw: Any) -> Any:
        cur = self._conn.cursor(*a, **kw)
        outer = self

        class Cursor:
            def __getattr__(self, name: str) -> Any:
                return getattr(cur, name)

            def __enter__(self) -> Any:
                return self

            def __exit__(self, *exc: object) -> None:
                cur.close()

            def execute(self, sql: str, *args: Any) -> Any:
                out = cur.execute(sql, *args)
                probe = sql.startswith("SELECT 1 FROM") and "BETWEEN" in sql
                if probe and args and args[0] and args[0][0] == outer._symbol:
                    outer._proxy.cut()
                return out

        return Cursor()


@pytest.mark.parametrize(
    "proxied",
    [pytest.param("mysql", marks=pytest.mark.mysql), pytest.param("postgres", marks=pytest.mark.postgres)],
    indirect=True,
)
def test_database_lost_in_symbol_k_keeps_the_earlier_symbols_and_rolls_k_back(
    proxied: tuple[str, str, TcpProxy], emu: Emulator, client: Any
) -> None:
    """The connection is cut in the second symbol's first load (loaded straight into the table) while the third
    symbol is being fetched ahead: the first symbol stays committed, the second holds nothing, the run stops (the
    database is gone for every symbol), the prefetch is stopped, and a re-run converges."""
    kind, conn_id, proxy = proxied
    sink = new_sink(kind, conn_id, retry_attempts=1)
    connect = sink._connect
    sink._connect = lambda: _CutAtSymbol(connect(), proxy, "ETHUSDT")  # type: ignore[method-assign]
    try:
        with pytest.raises(SinkError):
            run_symbols([sink], client, keep_going=True)
    finally:
        sink.close()
    proxy.start()  # the database is back
    check = new_sink(kind, conn_id)
    try:
        assert stored(check, "BTCUSDT") == expected(emu, "BTCUSDT")
        assert check.count(KLINES_M5, "ETHUSDT") == 0  # its first group rolled back whole, nothing after it ran
        assert check.count(KLINES_M5, "SOLUSDT") == 0  # fetched ahead, never written
        assert [r.outcome for r in check.recent_runs(KLINES_M5, "BTCUSDT", 10)] == ["success"]
        outcome, _ = run_symbols([check], client, keep_going=False)
        assert [r.outcome for r in outcome.results] == ["success"] * len(SYMBOLS)
        for symbol in SYMBOLS:
            assert stored(check, symbol) == expected(emu, symbol)
    finally:
        check.close()


@pytest.mark.mysql
def test_cli_run_of_several_archive_symbols_fetches_ahead(
    emu: Emulator, mysql_conn_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    argv = ["klines", "--interval", "5m", "--symbols", ",".join(SYMBOLS), "--start", iso(START), "--end", iso(END)]
    argv += ["--source", "archive", "--sink", "mysql", "--conn-id", mysql_conn_id]
    with caplog.at_level(logging.DEBUG, logger="binance_extractor.lookahead"):
        results = cli.execute(argv)
    assert [(r.symbol, r.outcome, r.rows_written) for r in results] == [(s, "success", PER_SYMBOL) for s in SYMBOLS]
    ahead = [r.getMessage() for r in caplog.records if "fetched ahead" in r.getMessage()]
    assert ahead == [f"klines_m5 {s}: archive files fetched ahead" for s in SYMBOLS[1:]]
    sink = new_sink("mysql", mysql_conn_id)
    try:
        for symbol in SYMBOLS:
            assert stored(sink, symbol) == expected(emu, symbol)
    finally:
        sink.close()
