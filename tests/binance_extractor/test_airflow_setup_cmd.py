"""``setup-airflow`` against a real (SQLite) Airflow metadata DB: creates the pool, Variable and connection once,
changes nothing on a second run, resizes the pool from config/env, never overwrites an operator's Variable."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from sqlalchemy import delete, select

from binance_extractor import cli

pytestmark = pytest.mark.usefixtures("airflow_db")


@pytest.fixture
def clean_objects() -> Iterator[None]:
    """The DB is shared by the session: leave the Variable/connection absent and the pool at the tests' 4 slots."""
    from airflow.models import Connection, Variable
    from airflow.utils.session import create_session

    from tests.fixtures.airflow import create_pool

    def wipe() -> None:
        with create_session() as session:
            session.execute(delete(Variable).where(Variable.key == "binance_symbols"))
            session.execute(delete(Connection).where(Connection.conn_id == "binance_setup_test"))

    wipe()
    yield
    wipe()
    create_pool()


def _objects() -> tuple[int, str | None, tuple[str, str | None, str | None] | None]:
    from airflow.models import Connection, Pool, Variable
    from airflow.utils.session import create_session

    with create_session() as session:
        pool = session.scalar(select(Pool).where(Pool.pool == "binance_api"))
        var = session.scalar(select(Variable).where(Variable.key == "binance_symbols"))
        conn = session.scalar(select(Connection).where(Connection.conn_id == "binance_setup_test"))
        assert pool is not None
        return (
            pool.slots,
            var.val if var is not None else None,
            (conn.conn_type, conn.host, conn.password) if conn is not None else None,
        )


def test_setup_airflow_is_idempotent(clean_objects, monkeypatch, capsys):
    monkeypatch.setenv("BINANCE_API_POOL_SLOTS", "3")
    monkeypatch.setenv("BINANCE_SYMBOLS", "BTCUSDT,ETHUSDT")
    monkeypatch.setenv("BINANCE_FUTURES_BASE_URL", "http://127.0.0.1:9/")
    monkeypatch.setenv("BINANCE_API_KEY", "k-123")
    argv = ["setup-airflow", "--binance-conn-id", "binance_setup_test"]
    first = cli.execute(argv)
    assert [(r["object"], r["action"]) for r in first] == [
        ("pool", "updated"),  # the tests' pool had 4 slots
        ("variable", "created"),
        ("connection", "created"),
    ]
    slots, var, conn = _objects()
    assert slots == 3
    assert var is not None and json.loads(var) == ["BTCUSDT", "ETHUSDT"]
    assert conn == ("binance", "http://127.0.0.1:9", "k-123")

    # Second run: nothing changes, even when the operator edited the Variable meanwhile.
    from airflow.models import Variable
    from airflow.utils.session import create_session

    with create_session() as session:
        session.scalar(select(Variable).where(Variable.key == "binance_symbols")).set_val('["SOLUSDT"]')
    assert cli.main(argv) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["action"] for r in lines] == ["unchanged"] * 3
    assert _objects()[1] == '["SOLUSDT"]'

    # A new size from the environment resizes the pool; the flag wins over it.
    monkeypatch.setenv("BINANCE_API_POOL_SLOTS", "6")
    assert cli.execute(argv)[0] == {"object": "pool", "name": "binance_api", "slots": 6, "action": "updated"}
    assert cli.execute([*argv, "--pool-slots", "2"])[0]["slots"] == 2
    assert _objects()[0] == 2


def test_bad_pool_size_is_one_line_and_exit_2(monkeypatch, capsys):
    monkeypatch.setenv("BINANCE_API_POOL_SLOTS", "many")
    assert cli.main(["setup-airflow"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: BINANCE_API_POOL_SLOTS must be a whole number, not 'many'"
    monkeypatch.setenv("BINANCE_API_POOL_SLOTS", "0")
    assert cli.main(["setup-airflow"]) == 2
    assert "at least 1" in capsys.readouterr().err


def test_connection_from_the_secret_is_not_copied_into_the_db(clean_objects, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_BINANCE_SETUP_TEST", '{"conn_type": "binance", "host": "http://127.0.0.1:9"}')
    results = cli.execute(["setup-airflow", "--binance-conn-id", "binance_setup_test"])
    assert results[-1] == {
        "object": "connection",
        "name": "binance_setup_test",
        "action": "from AIRFLOW_CONN_BINANCE_SETUP_TEST",
    }
    assert _objects()[2] is None
