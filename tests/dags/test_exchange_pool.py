"""Every task that calls the exchange holds a slot of the ``binance_api`` pool, in every DAG.

The pool bounds how many processes share the IP's weight budget, so a task that calls the exchange outside it
(the gap filler's ``detect`` and ``report`` asked fundingInfo from ``default_pool``) is one more requester than
the pool admits. Which tasks call the exchange is observed, not listed: each DAG runs once (``dag.test()``,
local runtime, embedded SQLite store) against the emulator, and every request the emulator received is
attributed to the task instance that was running when it arrived (``dag.test()`` runs one task at a time).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from binance_extractor import cli
from binance_extractor.timeutil import iso

AT = datetime(2024, 3, 1, 5, 0, tzinfo=UTC)  # a fixed, long-closed past
POOL = "binance_api"
MANUAL_CONF = {
    "symbols": ["BTCUSDT"],
    "interval": "1h",
    "start": "2024-01-01T00:00:00Z",
    "end": "2024-01-02T00:00:00Z",
    "sinks": ["sqlite"],
}
NO_EXCHANGE = {"binance_maintenance"}  # retention: deletes old rows, asks the exchange nothing


@pytest.fixture
def env(airflow_db: Any, emulator: Any, sqlite_conn_id: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("BINANCE_SYMBOLS", "BTCUSDT")
    monkeypatch.setenv("BINANCE_EXTRACTOR_SINKS", "sqlite")
    monkeypatch.setenv("BINANCE_EXTRACTOR_RUNTIME", "local")
    monkeypatch.setenv("BINANCE_EXTRACTOR_HISTORY_DAYS", "1")
    return emulator


def calling_tasks(dr: Any, requests: list[Any]) -> dict[str, int]:
    """task id -> requests that arrived while one of its instances ran; a request outside every task fails."""
    ran = [ti for ti in dr.get_task_instances() if ti.start_date is not None]  # a skipped task never started
    spans = [(ti.task_id, ti.start_date.timestamp(), ti.end_date.timestamp()) for ti in ran]
    out: dict[str, int] = {}
    for r in requests:
        owners = [task for task, start, end in spans if start <= r.time <= end]
        assert len(owners) == 1, f"{r.path} at {r.time} ran in {owners or 'no task'}: {spans}"
        out[owners[0]] = out.get(owners[0], 0) + 1
    return out


def test_every_dag_is_checked(dagbag: Any) -> None:
    assert set(dagbag.dag_ids) == set(DAG_IDS)


DAG_IDS = [
    "binance_funding_rates",
    "binance_klines_d1",
    "binance_klines_gap_filler",
    "binance_klines_h1",
    "binance_klines_m15",
    "binance_klines_m30",
    "binance_klines_m5",
    "binance_klines_manual",
    "binance_maintenance",
    "binance_trades",
]


@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_every_task_calling_the_exchange_takes_a_binance_api_slot(env: Any, dagbag: Any, dag_id: str) -> None:
    dag = dagbag.dags[dag_id]
    kwargs: dict[str, Any] = {"logical_date": AT}
    if dag_id == "binance_klines_manual":
        kwargs["run_conf"] = MANUAL_CONF
    if dag_id == "binance_klines_gap_filler":  # stored rows, so that detect and report have tables to scan
        span = ["--start", iso(AT - timedelta(hours=6)), "--end", iso(AT), "--sink", "sqlite", "--source", "rest"]
        cli.execute(["klines", "--interval", "5m", "--symbols", "BTCUSDT", *span])
    env.reset_stats()
    dr = dag.test(**kwargs)
    assert dr.state == "success", f"{dag_id}: {dr.state}"
    called = calling_tasks(dr, list(env.requests))
    pools = {t.task_id: t.pool for t in dag.tasks}
    assert {task: pools[task] for task in called} == {task: POOL for task in called}, called
    if dag_id in NO_EXCHANGE:
        assert called == {}
    else:
        assert called  # the observation works: this DAG does call the exchange
