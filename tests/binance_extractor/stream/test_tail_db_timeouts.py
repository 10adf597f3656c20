"""The live tail's single writer against a database that goes silent (a real MariaDB behind a loopback proxy that
stops forwarding): every write fails within the connection's timeouts with a one-line error, the batch is held,
and once the path is back every candle lands exactly once. Without timeouts the writer thread would block for the
operating system's TCP timeouts (hours) with every later candle queued behind it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from binance_extractor.clock import FixedClock
from tests.binance_extractor.stream.harness import rest, running_tail, stored, wait_until
from tests.emulator import Emulator
from tests.emulator import data as D
from tests.fixtures.databases import MYSQL_HOST, MYSQL_PORT, TcpProxy

MIN = 60_000
HANG_GUARD = 120.0  # only turns a hang into a failure


class Collected(logging.Handler):
    """The tail's warnings, on its own logger (Airflow's logging setup, run on first use, replaces the root's
    handlers and with them pytest's caplog)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def warnings() -> Iterator[Collected]:
    handler = Collected()
    logger = logging.getLogger("binance_extractor.stream.tail")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


@pytest.fixture
def silent_mysql(mysql_database: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[TcpProxy]:
    proxy = TcpProxy(MYSQL_HOST, MYSQL_PORT)
    proxy.start()
    monkeypatch.setenv("BINANCE_EXTRACTOR_DB_RETRY_ATTEMPTS", "1")  # each of the writer's tries: one timeout
    extras = "connect_timeout=2&read_timeout=5&write_timeout=5"
    monkeypatch.setenv("AIRFLOW_CONN_MYSQL_DEFAULT", f"mysql://root@127.0.0.1:{proxy.port}/{mysql_database}?{extras}")
    try:
        yield proxy
    finally:
        proxy.cut()


def test_a_silent_database_fails_each_write_in_one_line_and_the_held_batch_lands_once_it_is_back(
    silent_mysql: TcpProxy, emu: Emulator, fixed_clock: FixedClock, warnings: Collected
) -> None:
    proxy = silent_mysql
    sym, iv = "BTCUSDT", "1m"
    with running_tail(emu, [sym], [iv], sink_names=["mysql"]) as run:
        proxy.stall()  # the network to the database goes silent under the writer's open connection
        queued = run.stats.candles_queued
        fixed_clock.advance(2 * MIN)  # two candles close meanwhile
        wait_until(lambda: run.stats.candles_queued >= queued + 2, "two closes received", HANG_GUARD)
        wait_until(lambda: run.stats.write_failures >= 2, "the writer's tries to fail", HANG_GUARD)
        failed = [m for m in warnings.messages if m.startswith("stream: write failed")]
        assert failed and all("\n" not in m for m in failed), warnings.messages
        assert f"(mysql sink (127.0.0.1:{proxy.port}/" in failed[0] and "(timeouts: connect 2 s, read 5 s" in failed[0]
        assert "holding the batch" in failed[0]
        stored_before = run.stats.candles_stored
        proxy.resume()
        wait_until(lambda: run.stats.candles_stored >= stored_before + 2 and run.idle(), "the held batch", HANG_GUARD)
        stats = run.stop()
    assert stats.write_failures >= 2
    end = fixed_clock.now_ms()
    got = stored("mysql", sym, iv, end - D.DAY, end)
    assert got == rest(emu, sym, iv, end - D.DAY, end)  # every closed candle, once, exact
    assert [k.open_time for k in got] == sorted({k.open_time for k in got})
