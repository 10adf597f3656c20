"""PostgreSQL-specific behaviour on the real server: exact types, gap queries, errors without credentials,
lost connections, and selection by ``--sink postgres`` / ``BINANCE_EXTRACTOR_SINKS=postgres``."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from binance_extractor import config
from binance_extractor.errors import SinkError
from binance_extractor.kinds import Dataset
from binance_extractor.models import Kline
from binance_extractor.sinks import open_sinks
from binance_extractor.sinks.postgres import PostgresStore
from binance_extractor.timeutil import dt_to_ms
from tests.binance_extractor.sinks.conftest import klines
from tests.fixtures.databases import POSTGRES_HOST, POSTGRES_PORT, TcpProxy, free_port, postgres_admin

KLINES_M5 = Dataset.of_table("klines_m5")

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg(postgres_conn_id: str) -> Iterator[PostgresStore]:
    sink = PostgresStore(postgres_conn_id, retry_attempts=3)
    sink.ensure_schema()
    yield sink
    sink.close()


def test_columns_are_exact_and_utc(pg: PostgresStore, postgres_database: str) -> None:
    with postgres_admin() as admin:
        admin.execute(f"ALTER DATABASE \"{postgres_database}\" SET timezone TO 'Asia/Tokyo'")  # not UTC on purpose
    pg.close()
    types = dict(
        pg.query("SELECT column_name, data_type FROM information_schema.columns WHERE table_name = %s", ["klines_m5"])
    )
    assert types["close"] == "numeric" and types["open_time"] == "timestamp with time zone"
    wide = klines(n=1)[0].model_copy(
        update={"quote_volume": Decimal("123456789012345678901234567.0000000000000000000001")}  # beyond DECIMAL(38,18)
    )
    pg.write(KLINES_M5, [wide])
    (got,) = pg.read(KLINES_M5, "XRPUSDT")
    assert got["quote_volume"] == wide.quote_volume and got["open_time"] == wide.open_time
    assert got["open_time"].utcoffset() == timedelta(0)
    assert Kline(**got) == wide


def test_gap_detection_runs_in_the_database(pg: PostgresStore) -> None:
    rows = klines(n=100)
    pg.write(KLINES_M5, rows[:40] + rows[43:90] + rows[91:])
    lo, hi = dt_to_ms(rows[0].open_time), dt_to_ms(rows[-1].open_time) + 300_000
    pairs = pg.gap_queries().kline_pairs(KLINES_M5, "XRPUSDT", lo, hi, 300_000)
    assert pairs == [
        (dt_to_ms(rows[39].open_time), dt_to_ms(rows[43].open_time)),
        (dt_to_ms(rows[89].open_time), dt_to_ms(rows[91].open_time)),
    ]


def test_selected_by_name_and_environment(postgres_conn_id: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BINANCE_EXTRACTOR_SINKS", "postgres")
    assert config.sink_names() == ["postgres"]
    (sink,) = open_sinks()
    try:
        assert isinstance(sink, PostgresStore) and sink.conn_id == "postgres_default"
        assert sink.write(KLINES_M5, klines(n=3)) == 3
    finally:
        sink.close()


def test_closed_port_gives_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    monkeypatch.setenv("AIRFLOW_CONN_POSTGRES_DEFAULT", f"postgres://postgres@127.0.0.1:{port}/x")
    sink = PostgresStore(retry_attempts=2, retry_max_wait=0.2)
    with pytest.raises(SinkError) as err:
        sink.ensure_schema()
    msg = str(err.value)
    assert msg.startswith(f"postgres sink (127.0.0.1:{port}/x") and "\n" not in msg, msg


@pytest.fixture
def pg_user(postgres_database: str) -> Iterator[tuple[str, str]]:
    user, password = f"bx_{uuid.uuid4().hex[:8]}", f"Pw-{uuid.uuid4().hex}"
    with postgres_admin() as admin:
        admin.execute(f"CREATE ROLE {user} LOGIN PASSWORD '{password}'")
        admin.execute(f'GRANT ALL ON DATABASE "{postgres_database}" TO {user}')
    yield user, password
    with postgres_admin() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{postgres_database}" WITH (FORCE)')
        admin.execute(f"DROP ROLE IF EXISTS {user}")


def test_undefined_database_message_has_no_password(
    pg_user: tuple[str, str], postgres_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    user, password = pg_user  # trust auth here: a wrong password is not refused, a missing database is
    base = f"{POSTGRES_HOST}:{POSTGRES_PORT}/no_such_db_{uuid.uuid4().hex[:6]}"
    monkeypatch.setenv("AIRFLOW_CONN_POSTGRES_DEFAULT", f"postgres://{user}:{password}@{base}")
    sink = PostgresStore(retry_attempts=2, retry_max_wait=0.2)
    with pytest.raises(SinkError) as err:
        sink.write(KLINES_M5, klines(n=2))
    msg = str(err.value)
    assert base in msg and "does not exist" in msg, msg
    assert password not in msg
    assert err.value.__cause__ is None and err.value.__suppress_context__


def test_undefined_connection_id() -> None:
    with pytest.raises(SinkError, match="connection id 'no_such_pg' is not defined"):
        PostgresStore("no_such_pg", retry_attempts=1).ensure_schema()


def test_killed_connection_is_retried_transparently(pg: PostgresStore) -> None:
    rows = klines(n=400)
    pg.write(KLINES_M5, rows[:200])
    pid = pg.query("SELECT pg_backend_pid()")[0][0]
    with postgres_admin() as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))  # the server drops our session mid-run
    assert pg.write(KLINES_M5, rows[100:]) == 300
    assert pg.count(KLINES_M5) == 400


def test_database_going_away_then_rerun_completes(postgres_database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = TcpProxy(POSTGRES_HOST, POSTGRES_PORT)
    proxy.start()
    monkeypatch.setenv(
        "AIRFLOW_CONN_POSTGRES_DEFAULT", f"postgres://postgres@127.0.0.1:{proxy.port}/{postgres_database}"
    )
    rows = klines(n=600)
    sink = PostgresStore(retry_attempts=3, retry_max_wait=0.3)
    try:
        sink.write(KLINES_M5, rows[:200])
        proxy.cut()  # network to the database is gone, and stays gone
        with pytest.raises(SinkError) as err:
            sink.write(KLINES_M5, rows[200:400])
        assert str(err.value).startswith(f"postgres sink (127.0.0.1:{proxy.port}/"), str(err.value)
        proxy.start()  # it comes back: a later run of the whole range completes, nothing lost or duplicated
        again = PostgresStore(retry_attempts=3)
        assert again.write(KLINES_M5, rows) == 600
        got: list[Any] = again.read(KLINES_M5, "XRPUSDT")
        assert [Kline(**r) for r in got] == rows
        again.close()
    finally:
        sink.close()
        proxy.cut()


def test_last_time_is_served_by_the_primary_key(pg: PostgresStore) -> None:
    pg.write(KLINES_M5, klines("AAAUSDT", 300) + klines("BBBUSDT", 300))
    pg._tx(lambda cur: cur.execute("ANALYZE klines_m5"))  # fresh statistics, as autovacuum would keep them
    plan = "\n".join(r[0] for r in pg.query("EXPLAIN " + pg.last_time_sql(KLINES_M5), ["AAAUSDT"]))
    assert re.search(r"Index (Only )?Scan Backward using klines_m5_pkey", plan), plan
    assert "Sort" not in plan and "Seq Scan" not in plan, plan
