"""A silent network partition fails a database call within the connection's timeouts, in one line, and loses
nothing: real MariaDB, PostgreSQL and Mongo wire servers behind a loopback proxy the test owns, which stops
forwarding (``TcpProxy.stall``: connections stay open, bytes are neither delivered nor refused).

The timeouts come from the Airflow connection's extras (here as URI query parameters), set to a few seconds; the
defaults (``binance_extractor.db_timeouts``) are what a connection without them gets. Each blocking call runs
under a hang guard (``HANG_GUARD``): it only turns a hang into a failure, it measures nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import pytest

from binance_extractor import db_timeouts
from binance_extractor.errors import SinkError
from binance_extractor.kinds import Dataset
from binance_extractor.models import Kline
from binance_extractor.sinks import open_sinks
from binance_extractor.timeutil import iso
from tests.binance_extractor.sinks.conftest import klines
from tests.fixtures.databases import MYSQL_HOST, MYSQL_PORT, POSTGRES_HOST, POSTGRES_PORT, MongoServer, TcpProxy

KLINES_M5 = Dataset.of_table("klines_m5")

ROOT = Path(__file__).resolve().parents[3]
HANG_GUARD = 120.0  # seconds: longer than any timeout here with its retries; never a measured duration
T = TypeVar("T")
SHORT = {
    "mysql": "connect_timeout=2&read_timeout=3&write_timeout=3",
    "postgres": "connect_timeout=2&options=" + quote("-c statement_timeout=3000"),  # libpq's minimum connect: 2 s
    "mongo": "connectTimeoutMS=2000&serverSelectionTimeoutMS=2000&socketTimeoutMS=3000",
}
LIMIT_TEXT = {
    "mysql": "(timeouts: connect 2 s, read 3 s, write 3 s)",
    "postgres": "",  # the last attempt's error: libpq's own "connection timeout expired"
    "mongo": "",
}


def guarded(fn: Callable[[], T]) -> T:
    """``fn()`` in a thread; a call still blocked after the hang guard fails the test instead of hanging it."""
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(("ok", fn()))
        except BaseException as exc:
            out.append(("err", exc))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(HANG_GUARD)
    assert out, "the database call hung: no timeout ended it"
    kind, value = out[0]
    if kind == "err":
        raise value
    return value  # type: ignore[no-any-return]


class Proxied:
    """The named store's default connection through a TcpProxy; ``short()`` puts short timeouts in its extras
    (until then the connection has the defaults, so setting up on a loaded machine never trips them)."""

    def __init__(self, kind: str, proxy: TcpProxy, uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
        self.kind, self.proxy, self.uri, self._mp = kind, proxy, uri, monkeypatch
        self.env = f"AIRFLOW_CONN_{kind.upper()}_DEFAULT"
        monkeypatch.setenv(self.env, uri)

    def short(self) -> None:
        self._mp.setenv(self.env, f"{self.uri}{'&' if '?' in self.uri else '?'}{SHORT[self.kind]}")


@pytest.fixture(params=["mysql", "postgres", "mongo"])
def proxied(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Proxied]:
    kind = str(request.param)
    monkeypatch.setenv("BINANCE_EXTRACTOR_DB_RETRY_ATTEMPTS", "2")
    if kind == "mysql":
        db = request.getfixturevalue("mysql_database")
        proxy = TcpProxy(MYSQL_HOST, MYSQL_PORT, recv_buffer=65536)
        uri = f"mysql://root@127.0.0.1:{proxy.port}/{db}"
    elif kind == "postgres":
        db = request.getfixturevalue("postgres_database")
        proxy = TcpProxy(POSTGRES_HOST, POSTGRES_PORT, recv_buffer=65536)
        uri = f"postgres://postgres@127.0.0.1:{proxy.port}/{db}"
    else:
        server: MongoServer = request.getfixturevalue("mongo_server")
        proxy = TcpProxy(server.host, server.port, recv_buffer=65536)
        # directConnection: the wire server calls itself a replica set primary at its own address, which pymongo
        # would otherwise discover and use, bypassing the proxy
        uri = f"mongo://127.0.0.1:{proxy.port}/bx_test_{uuid.uuid4().hex[:8]}?directConnection=true"
    proxy.start()
    try:
        yield Proxied(kind, proxy, uri, monkeypatch)
    finally:
        proxy.cut()


def _stored(kind: str) -> list[Kline]:
    (sink,) = open_sinks([kind])
    try:
        return [Kline(**r) for r in sink.read(KLINES_M5, "XRPUSDT")]
    finally:
        sink.close()


def _one_line(kind: str, proxy: TcpProxy, exc: BaseException) -> str:
    msg = str(exc)
    assert "\n" not in msg and len(msg) <= 500, msg
    assert msg.startswith(f"{kind} sink (127.0.0.1:{proxy.port}/"), msg
    assert LIMIT_TEXT[kind] in msg, msg
    return msg


def test_a_stalled_connection_fails_the_write_in_one_line_and_loses_nothing(proxied: Proxied) -> None:
    kind, proxy = proxied.kind, proxied.proxy
    rows = klines(n=60)
    (sink,) = open_sinks([kind])
    sink.write(KLINES_M5, rows[:30])  # schema made, a first batch stored
    sink.close()
    proxied.short()
    (sink,) = open_sinks([kind])
    assert sink.count(KLINES_M5) == 30  # connected, with the short timeouts
    proxy.stall()  # the network goes silent under the open connection
    with pytest.raises(SinkError) as err:
        guarded(lambda: sink.write(KLINES_M5, rows[30:]))
    _one_line(kind, proxy, err.value)
    with pytest.raises(SinkError) as again:  # a new connection through the silent path: the connect timeout
        guarded(lambda: open_sinks([kind])[0].count(KLINES_M5))
    _one_line(kind, proxy, again.value)
    sink.close()
    proxy.resume()
    stored = _stored(kind)
    if kind == "mongo":
        # no transaction on a standalone server: the stalled bytes reach it once the path is back, so part of the
        # batch may land, each row exactly as sent (the sink's documented contract; the re-run converges)
        assert stored[:30] == rows[:30] and all(k in rows for k in stored)
    else:  # the transaction never committed: nothing of the failed batch, nothing before it lost
        assert stored == rows[:30]
    (sink,) = open_sinks([kind])
    assert sink.write(KLINES_M5, rows) == 60  # the re-run converges: every row once
    sink.close()
    assert _stored(kind) == rows


def test_mysql_write_timeout_ends_a_statement_the_network_stopped_taking(
    mysql_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A statement larger than the socket buffers: the client blocks in send(), and only write_timeout ends it."""
    from binance_extractor.sinks.mysql import MySqlStore

    monkeypatch.setenv("BINANCE_EXTRACTOR_DB_RETRY_ATTEMPTS", "1")
    direct = f"mysql://root@{MYSQL_HOST}:{MYSQL_PORT}/{mysql_database}"
    monkeypatch.setenv("AIRFLOW_CONN_MYSQL_DEFAULT", direct)
    MySqlStore("mysql_default").ensure_schema()
    rows = [k for c in "ABCDEFGHIJKL" for k in klines(f"{c * 3}USDT", 1999)]  # ~24k rows: ~7 MB as one statement
    proxy = TcpProxy(MYSQL_HOST, MYSQL_PORT, recv_buffer=65536)
    proxy.start()
    proxied = f"mysql://root@127.0.0.1:{proxy.port}/{mysql_database}?write_timeout=2"
    monkeypatch.setenv("AIRFLOW_CONN_MYSQL_DEFAULT", proxied)
    sink = MySqlStore("mysql_default", batch_size=len(rows))
    try:
        assert sink.count(KLINES_M5) == 0  # connected
        proxy.stall()
        with pytest.raises(SinkError) as err:
            guarded(lambda: sink.write(KLINES_M5, rows))
        msg = str(err.value)
        assert ("(2006)" in msg or "(2013)" in msg) and "write 2 s)" in msg and "\n" not in msg, msg
    finally:
        sink.close()
        proxy.cut()
    monkeypatch.setenv("AIRFLOW_CONN_MYSQL_DEFAULT", direct)
    assert MySqlStore("mysql_default").count(KLINES_M5) == 0  # not one row of the statement landed


def test_unset_extras_get_defaults_that_fail_within_a_minute() -> None:
    """The defaults, retries included (5 attempts, backoff 0.2 s doubling, up to 0.5 s jitter each): one read
    timeout, then four reconnects that each end at the connect timeout."""
    backoff = sum(0.2 * 2**i + 0.5 for i in range(4))
    assert db_timeouts.MYSQL["read_timeout"] + 4 * db_timeouts.MYSQL["connect_timeout"] + backoff < 60
    _, answer_s = db_timeouts.postgres({}, "test")
    assert answer_s is not None and answer_s + 4 * db_timeouts.POSTGRES["connect_timeout"] + backoff < 60
    mongo = db_timeouts.MONGO
    assert (mongo["socketTimeoutMS"] + 4 * mongo["serverSelectionTimeoutMS"]) / 1000 + backoff < 60


def test_a_timeout_extra_that_is_not_a_number_is_one_line(mysql_database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_MYSQL_DEFAULT", f"mysql://root@{MYSQL_HOST}:{MYSQL_PORT}/{mysql_database}?read_timeout=soon"
    )
    with pytest.raises(SinkError, match=r"^mysql sink \(conn id mysql_default\): read_timeout must be a number"):
        open_sinks(["mysql"])[0].count(KLINES_M5)


@pytest.mark.parametrize("proxied", ["mysql"], indirect=True)  # one store for the task path; each is tested above
def test_the_cli_as_a_task_runs_it_fails_in_one_line_when_the_database_goes_silent(
    proxied: Proxied, emulator: Any
) -> None:
    """The database goes silent while the first page is on its way: exit 1 with one line, nothing written; a
    re-run lands exactly the source."""
    proxy = proxied.proxy
    (sink,) = open_sinks(["mysql"])
    sink.ensure_schema()  # made with the defaults: on a loaded machine, the short limits below apply to the run only
    sink.close()
    proxied.short()
    start, end = "2024-01-01T00:00:00Z", "2024-01-01T12:00:00Z"
    argv = ["klines", "--interval", "5m", "--symbols", "BTCUSDT", "--start", start, "--end", end]
    argv += ["--source", "rest", "--sink", "mysql"]
    env = {**os.environ, "BINANCE_FUTURES_BASE_URL": emulator.url, "BINANCE_LOG_FORMAT": "json"}
    emulator.slow_seconds = 3
    emulator.inject("slow", times=1, path="/fapi/v1/klines")  # the first page is on its way ...
    proc = subprocess.Popen(
        [sys.executable, "-m", "binance_extractor", *argv],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    guarded(lambda: _until(lambda: not emulator.faults, proc))  # ... the request arrived: the schema is made
    proxy.stall()  # ... and the database goes silent before its rows are written
    _, err = proc.communicate(timeout=HANG_GUARD)
    assert proc.returncode == 1, err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"error: mysql sink (127.0.0.1:{proxy.port}/") and LIMIT_TEXT["mysql"] in last, last
    proxy.resume()
    assert _stored_symbol("BTCUSDT") == []  # nothing half-written
    done = subprocess.run(
        [sys.executable, "-m", "binance_extractor", *argv], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-500:]
    served = emulator.klines_rows("BTCUSDT", "5m", 1_704_067_200_000, 1_704_067_200_000 + 12 * 3_600_000 - 1)
    assert [iso(k.open_time) for k in _stored_symbol("BTCUSDT")] == [
        iso(Kline.from_rest("BTCUSDT", "5m", r).open_time) for r in served
    ]
    assert json.loads(done.stdout.strip().splitlines()[-1])["rows_written"] == len(served) == 144


def _until(cond: Callable[[], bool], proc: subprocess.Popen[str]) -> None:
    import time

    while not cond():
        assert proc.poll() is None, proc.communicate()[1][-500:]
        time.sleep(0.02)


def _stored_symbol(symbol: str) -> list[Kline]:
    (sink,) = open_sinks(["mysql"])
    try:
        return [Kline(**r) for r in sink.read(KLINES_M5, symbol)]
    finally:
        sink.close()
