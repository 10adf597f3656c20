"""The stores: atomic read-modify-write of the shared state, and a clear error when unreachable."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from binance_extractor.budget import budget_key, open_budget_store
from binance_extractor.budget.redis_store import RedisBudgetStore
from binance_extractor.budget.sql_store import SqlBudgetStore
from binance_extractor.budget.sqlite_store import SqliteBudgetStore
from binance_extractor.errors import BudgetUnavailableError, InputError

ROOT = Path(__file__).resolve().parents[3]
INCREMENT = """
import sys
from binance_extractor.budget import open_budget_store
store = open_budget_store(sys.argv[1])
for _ in range(200):
    store.transact(sys.argv[2], lambda st: st.__setitem__("n", st.get("n", 0) + 1))
"""


SERVERS = {
    "redis": "redis://127.0.0.1:6379/0",
    "mysql": "mysql://root@127.0.0.1:3306/test",
    "mariadb": "mariadb://root@127.0.0.1:3306/test",  # the same server, named by its own scheme (MariaDB's dialect)
    "postgresql": "postgresql://postgres@127.0.0.1:5432/postgres",
}


@pytest.mark.parametrize("backend", ["sqlite", "redis", "mysql", "mariadb", "postgresql"])
def test_updates_from_several_processes_are_atomic(backend, tmp_path):
    url = SERVERS.get(backend) or f"sqlite:///{tmp_path / 'b.sqlite'}"
    key = f"test-atomic-{uuid.uuid4().hex}"
    procs = [subprocess.Popen([sys.executable, "-c", INCREMENT, url, key], cwd=ROOT) for _ in range(4)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    store = open_budget_store(url)
    assert store.transact(key, lambda st: st["n"]) == 800  # no lost update
    if isinstance(store, RedisBudgetStore):
        store._client.delete(key)
    if isinstance(store, SqlBudgetStore):
        with store._engine.begin() as conn:
            conn.exec_driver_sql(f"DELETE FROM binance_weight_budget WHERE name = '{key}'")
    store.close()


def test_default_store_is_a_sqlite_file_in_the_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("BINANCE_EXTRACTOR_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("BINANCE_EXTRACTOR_BUDGET_URL", raising=False)
    store = open_budget_store()
    assert isinstance(store, SqliteBudgetStore) and store.path == tmp_path / "budget.sqlite"
    store.transact("k", lambda st: st.update(x=1))
    assert (tmp_path / "budget.sqlite").exists()


def test_budget_key_separates_budget_names_and_exchanges(monkeypatch):
    monkeypatch.setenv("BINANCE_EXTRACTOR_BUDGET_NAME", "cluster-eu")
    assert budget_key("https://fapi.binance.com") == "binance-budget:cluster-eu:fapi.binance.com"
    assert budget_key("https://fapi.binance.com", "cluster-us") == "binance-budget:cluster-us:fapi.binance.com"


def test_unreachable_stores_raise_one_clear_line(tmp_path):
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(BudgetUnavailableError, match=r"store sqlite:///.* unreachable .*nothing was sent"):
        SqliteBudgetStore(tmp_path / "file" / "budget.sqlite").transact("k", lambda st: None)
    with pytest.raises(BudgetUnavailableError, match=r"store redis://:\*\*\*@127.0.0.1:9/0 unreachable") as err:
        RedisBudgetStore("redis://:secret@127.0.0.1:9/0", socket_timeout_s=1).transact("k", lambda st: None)
    assert "secret" not in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(BudgetUnavailableError, match=r"store mysql://root:\*\*\*@127.0.0.1:9/x unreachable") as err:
        SqlBudgetStore("mysql://root:secret@127.0.0.1:9/x").transact("k", lambda st: None)
    assert "secret" not in str(err.value)


def test_unknown_store_scheme_is_input_error():
    with pytest.raises(InputError, match="BINANCE_EXTRACTOR_BUDGET_URL"):
        open_budget_store("memcached://x")


@pytest.mark.parametrize("scheme", ["mariadb", "postgresql"])
def test_a_process_cut_off_inside_its_transaction_holds_the_budget_only_briefly(scheme, monkeypatch):
    """The network goes silent between ``SELECT ... FOR UPDATE`` and the write-back: that process fails within its
    timeouts ("nothing was sent"), and the server ends its session, row lock and all, after IDLE_TRANSACTION_S
    (here 2 s), so every other process goes on instead of waiting for the lost one for hours."""
    from binance_extractor.budget import sql_store
    from tests.binance_extractor.sinks.test_timeouts import guarded
    from tests.fixtures.databases import MYSQL_HOST, MYSQL_PORT, POSTGRES_HOST, POSTGRES_PORT, TcpProxy

    monkeypatch.setattr(sql_store, "IDLE_TRANSACTION_S", 2)
    if scheme == "mariadb":
        (host, port), path = (MYSQL_HOST, MYSQL_PORT), "root@{}/test"
        short = "connect_timeout=2&read_timeout=3&write_timeout=3"
    else:
        (host, port), path = (POSTGRES_HOST, POSTGRES_PORT), "postgres@{}/postgres"
        short = "connect_timeout=2&options=-c%20statement_timeout%3D3000"
    proxy = TcpProxy(host, port)
    proxy.start()
    key = f"test-cut-off-{uuid.uuid4().hex}"
    other = open_budget_store(f"{scheme}://{path.format(f'{host}:{port}')}")
    cut_off = open_budget_store(f"{scheme}://{path.format(f'127.0.0.1:{proxy.port}')}?{short}")
    try:
        other.transact(key, lambda st: st.update(n=0))
        with pytest.raises(BudgetUnavailableError, match=r"unreachable .*nothing was sent"):
            guarded(lambda: cut_off.transact(key, lambda st: proxy.stall()))  # the write-back never arrives
        assert guarded(lambda: other.transact(key, lambda st: st.update(n=st["n"] + 1) or st["n"])) == 1
    finally:
        proxy.cut()
        other.transact(key, lambda st: st.clear())
        cut_off.close()
        other.close()


def _rollback_journal_db_with_a_writer(path: Path) -> sqlite3.Connection:
    """A budget file not yet in WAL mode with a write transaction open on it: what another process switching it
    to WAL at the same instant holds (several processes opening a new budget at once, as at a start barrier)."""
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("CREATE TABLE IF NOT EXISTS other (x)")
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO other VALUES (1)")
    return writer


def test_a_busy_answer_that_skips_sqlites_busy_handler_is_waited_out(tmp_path):
    """``PRAGMA journal_mode=WAL`` answers SQLITE_BUSY at once, without the busy timeout, while another connection
    holds a write lock (SQLite's deadlock avoidance). A process must wait for it like for any lock, not fail its
    run with "store unreachable": a CI failure of test_processes.py, reproduced 2 times in 32 under load."""
    path = tmp_path / "budget.sqlite"
    writer = _rollback_journal_db_with_a_writer(path)
    store = SqliteBudgetStore(path, busy_timeout_s=60)
    result: list[object] = []
    waiter = threading.Thread(target=lambda: result.append(store.transact("k", lambda st: st.setdefault("n", 1))))
    waiter.start()
    time.sleep(0.5)  # (not join(0.5): under faketime a timed join overran its timeout here)
    assert waiter.is_alive() and not result  # waiting, not failed
    writer.execute("COMMIT")
    writer.close()
    waiter.join(60)
    assert result == [1]
    store.close()


def test_a_lock_held_longer_than_the_busy_timeout_is_one_clear_line(tmp_path):
    path = tmp_path / "budget.sqlite"
    writer = _rollback_journal_db_with_a_writer(path)
    with pytest.raises(BudgetUnavailableError, match=r"unreachable \(OperationalError: database is locked\); nothing"):
        SqliteBudgetStore(path, busy_timeout_s=0.3).transact("k", lambda st: None)
    writer.close()
