"""MySQL-specific behaviour on the real MariaDB: index use, errors without credentials, lost connections."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from binance_extractor.errors import SinkError
from binance_extractor.kinds import Dataset
from binance_extractor.models import Kline
from binance_extractor.sinks.mysql import MySqlStore
from tests.binance_extractor.sinks.conftest import funding, klines, trades
from tests.fixtures.databases import MYSQL_HOST, MYSQL_PORT, TcpProxy, free_port, mysql_admin

FUNDING_RATES = Dataset.of_table("funding_rates")
KLINES_M5 = Dataset.of_table("klines_m5")
TRADES = Dataset.of_table("trades")

pytestmark = pytest.mark.mysql


@pytest.fixture
def mysql(mysql_conn_id: str) -> Iterator[MySqlStore]:
    sink = MySqlStore(mysql_conn_id, retry_attempts=3)
    sink.ensure_schema()
    yield sink
    sink.close()


@pytest.mark.parametrize("table", ["klines_m5", "funding_rates", "trades", "agg_trades"])
def test_last_time_uses_the_primary_key(mysql: MySqlStore, table: str) -> None:
    mysql.write(KLINES_M5, klines("AAAUSDT", 300) + klines("BBBUSDT", 300))
    mysql.write(FUNDING_RATES, funding())
    mysql.write(TRADES, trades())
    (plan,) = mysql.explain_last_time(Dataset.of_table(table), "AAAUSDT")
    assert plan["key"] == "PRIMARY", plan
    assert plan["type"] in ("ref", "range"), plan
    assert "filesort" not in (plan["Extra"] or "").lower(), plan


def test_columns_are_exact_and_utc(mysql: MySqlStore) -> None:
    admin = mysql_admin()
    cur = admin.cursor()
    db = mysql._hook().connection.schema
    cur.execute(
        "SELECT column_name, column_type FROM information_schema.columns WHERE table_schema = %s "
        "AND table_name = 'klines_m5'",
        (db,),
    )
    types = dict(cur.fetchall())
    assert types["close"] == "decimal(38,18)" and types["open_time"] == "datetime(3)"
    cur.execute("SELECT engine FROM information_schema.tables WHERE table_schema = %s AND table_name='trades'", (db,))
    assert cur.fetchone()[0] == "InnoDB"
    row = klines(n=1)[0]
    mysql.write(KLINES_M5, [row])
    cur.execute(f"SELECT open_time FROM `{db}`.klines_m5")
    assert cur.fetchone()[0] == row.open_time.replace(tzinfo=None)  # stored as UTC wall time
    admin.close()


def test_values_too_wide_for_the_column_fail_the_whole_batch(mysql: MySqlStore) -> None:
    rows = klines(n=50)
    huge = rows[20].model_copy(update={"quote_volume": Decimal("1e25")})  # a valid model, 26 integer digits
    with pytest.raises(SinkError, match=r"\(1264\) Out of range"):
        mysql.write(KLINES_M5, [*rows[:20], huge, *rows[21:]])
    assert mysql.count(KLINES_M5) == 0


def test_closed_port_gives_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    monkeypatch.setenv("AIRFLOW_CONN_MYSQL_DEFAULT", f"mysql://root@127.0.0.1:{port}/test")
    sink = MySqlStore(retry_attempts=2, retry_max_wait=0.2)
    with pytest.raises(SinkError) as err:
        sink.ensure_schema()
    msg = str(err.value)
    assert f"127.0.0.1:{port}/test" in msg and ("(2002)" in msg or "(2003)" in msg), msg
    assert "\n" not in msg


@pytest.fixture
def mysql_user(mysql_database: str) -> Iterator[tuple[str, str]]:
    user, password = f"bx_{uuid.uuid4().hex[:8]}", f"Pw-{uuid.uuid4().hex}"
    admin = mysql_admin()
    cur = admin.cursor()
    cur.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", (user, password))
    cur.execute(f"GRANT ALL ON `{mysql_database}`.* TO %s@'%%'", (user,))
    yield user, password
    cur.execute("DROP USER %s@'%%'", (user,))
    admin.close()


def test_wrong_password_message_has_no_password(
    mysql_user: tuple[str, str], mysql_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    user, password = mysql_user
    base = f"{MYSQL_HOST}:{MYSQL_PORT}/{mysql_database}"
    monkeypatch.setenv("AIRFLOW_CONN_MYSQL_DEFAULT", f"mysql://{user}:{password}@{base}")
    good = MySqlStore(retry_attempts=1)
    good.ensure_schema()  # the right password works: credentials come from the Airflow connection
    good.close()
    wrong = "Wr0ng-" + uuid.uuid4().hex
    monkeypatch.setenv("AIRFLOW_CONN_MYSQL_DEFAULT", f"mysql://{user}:{wrong}@{base}")
    sink = MySqlStore(retry_attempts=2, retry_max_wait=0.2)
    with pytest.raises(SinkError) as err:
        sink.write(KLINES_M5, klines(n=2))
    msg = str(err.value)
    assert "(1045) Access denied" in msg and base in msg, msg
    assert wrong not in msg and password not in msg
    assert err.value.__cause__ is None and err.value.__suppress_context__


def test_undefined_connection_id() -> None:
    with pytest.raises(SinkError, match="connection id 'no_such_mysql' is not defined"):
        MySqlStore("no_such_mysql", retry_attempts=1).ensure_schema()


def test_killed_connection_is_retried_transparently(mysql: MySqlStore) -> None:
    rows = klines(n=400)
    mysql.write(KLINES_M5, rows[:200])
    admin = mysql_admin()
    admin.cursor().execute(f"KILL {mysql._conn.thread_id()}")  # the server drops our session mid-run
    assert mysql.write(KLINES_M5, rows[100:]) == 300
    assert mysql.count(KLINES_M5) == 400
    admin.close()


def test_database_going_away_then_rerun_completes(mysql_proxy_conn_id: tuple[str, TcpProxy]) -> None:
    conn_id, proxy = mysql_proxy_conn_id
    rows = klines(n=600)
    sink = MySqlStore(conn_id, retry_attempts=3, retry_max_wait=0.3)
    sink.write(KLINES_M5, rows[:200])
    proxy.cut()  # network to the database is gone, and stays gone
    with pytest.raises(SinkError) as err:
        sink.write(KLINES_M5, rows[200:400])
    msg = str(err.value)
    assert msg.startswith(f"mysql sink (127.0.0.1:{proxy.port}/"), msg
    assert any(code in msg for code in ("(2013)", "(2006)", "(2002)", "(2003)")), msg
    proxy.start()  # it comes back: a later run of the whole range completes, nothing lost or duplicated
    again = MySqlStore(conn_id, retry_attempts=3)
    assert again.write(KLINES_M5, rows) == 600
    got: list[Any] = again.read(KLINES_M5, "XRPUSDT")
    assert [Kline(**r) for r in got] == rows
    again.close()
    sink.close()


def test_a_value_mysql_would_round_fails_the_whole_batch(mysql: MySqlStore) -> None:
    rows = klines(n=2000)  # one batch of ~600 KB: far more than mysqlclient's default 64 KiB statement
    fine = rows[10].model_copy(update={"volume": Decimal("1.000000000000000001")})  # 18 places: exact
    mysql.write(KLINES_M5, [fine])
    assert mysql.read(KLINES_M5, "XRPUSDT")[0]["volume"] == fine.volume
    rounded = rows[20].model_copy(update={"volume": Decimal("1.0000000000000000001")})  # 19 places
    with pytest.raises(SinkError, match=r"cannot store a value exactly \(Note 1265"):
        mysql.write(KLINES_M5, [*rows[:20], rounded, *rows[21:]])
    assert mysql.count(KLINES_M5) == 1
