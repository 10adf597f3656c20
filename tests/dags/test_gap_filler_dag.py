"""``binance_klines_gap_filler``: schedule and settings, the kubernetes variant rendered offline, and a
``dag.test()`` with the local runtime against the emulator and a fresh MariaDB database.

The run re-checks a ledger row from before the evidence rule (the exchange serves it: filled), finds a hole of ours
(filled) and an exchange outage (confirmed once, in the ledger, with its evidence); a second run fetches nothing.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pendulum
import pytest

from binance_extractor import cli, clock, gaps
from binance_extractor.airflow import gap_tasks
from binance_extractor.kinds import Dataset
from binance_extractor.sinks import open_sinks
from binance_extractor.sinks.base import GapRecord
from binance_extractor.timeutil import iso, ms_to_dt

KLINES_H1 = Dataset.of_table("klines_h1")
KLINES_M5 = Dataset.of_table("klines_m5")

pytestmark = pytest.mark.mysql
DAG_FILE = Path(__file__).resolve().parents[2] / "dags" / "binance_klines_gap_filler.py"
MIN, HOUR, DAY = 60_000, 3_600_000, 86_400_000


def load_module() -> Any:
    spec = importlib.util.spec_from_file_location("gap_filler_dag_under_test", DAG_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dag_is_daily_at_two_with_settings(dagbag: Any) -> None:
    from airflow.serialization.encoders import coerce_to_core_timetable
    from airflow.timetables.base import TimeRestriction

    assert dagbag.import_errors == {}
    dag = dagbag.dags["binance_klines_gap_filler"]
    assert set(dag.tags) >= {"binance", "gaps"} and dag.max_active_runs == 1 and not dag.catchup
    assert dag.doc_md and "fill-gaps" in dag.doc_md
    assert [t.task_id for t in dag.tasks] == ["detect", "chunk", "fill", "verify", "report"]
    fill = dag.get_task("fill")
    assert fill.pool == "binance_api" and fill.retries == 3
    assert dag.get_task("verify").trigger_rule == "all_done" and dag.get_task("report").trigger_rule == "all_done"
    tt = coerce_to_core_timetable(dag.timetable)
    restriction = TimeRestriction(earliest=pendulum.datetime(2024, 5, 1, 3), latest=None, catchup=True)
    first = tt.next_dagrun_info(last_automated_data_interval=None, restriction=restriction)
    second = tt.next_dagrun_info(last_automated_data_interval=first.data_interval, restriction=restriction)
    assert [first.run_after, second.run_after] == [pendulum.datetime(2024, 5, 2, 2), pendulum.datetime(2024, 5, 3, 2)]


def test_kubernetes_runtime_runs_fill_gaps_in_pods() -> None:
    dag = load_module().build_dag(runtime="kubernetes")
    mapped = dag.get_task("fill")
    assert mapped.operator_class.__name__ == "TracedKubernetesPodOperator"
    assert mapped.partial_kwargs["pool"] == "binance_api"
    chunk = gaps.Chunk(gaps.gap_dataset("klines_m5"), "BTCUSDT", 0, 5 * MIN * 12, 0, 5 * MIN * 12)
    spec = gap_tasks.fill_spec([chunk], requested_by="airflow:test", xcom=True)
    argv = spec.to_argv()
    op = mapped.unmap(spec.task_kwargs(pod=True))
    assert op.spec == spec.to_dict() and op.map_label == f"klines_m5 BTCUSDT {chunk.spec().split('/')[2][:16]}"
    op.render_template_fields({"dag": dag, "task": op, "ds": "2024-03-01"})
    pod = op.build_pod_request_obj(dry_run=True)
    container = pod.spec.containers[0]
    assert container.args == argv and argv[:3] == ["fill-gaps", "--chunk", chunk.spec()]
    assert argv[-2:] == ["--xcom-file", "/airflow/xcom/return.json"]
    assert pod.metadata.namespace == "petrosa-apps"


@pytest.fixture
def env(frozen_clock: Any, airflow_db: Any, emulator: Any, mysql_conn_id: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The library (in the DAG's tasks too) and the emulator share one pinned instant."""
    monkeypatch.setenv("BINANCE_SYMBOLS", "BTCUSDT,ETHUSDT")
    monkeypatch.setenv("BINANCE_EXTRACTOR_SINKS", "mysql")
    monkeypatch.setenv("BINANCE_EXTRACTOR_RUNTIME", "local")
    return emulator


def xcom(dr: Any, task_id: str, key: str = "return_value") -> Any:
    from airflow.models.xcom import XComModel
    from airflow.settings import Session

    with Session() as session:
        rows = session.query(XComModel).filter_by(dag_id=dr.dag_id, run_id=dr.run_id, task_id=task_id, key=key).all()
    values = [json.loads(r.value) if isinstance(r.value, str) else r.value for r in rows]
    return values[0] if len(values) == 1 else values


def test_dag_run_fills_ours_confirms_the_exchanges_and_reruns_do_nothing(env: Any) -> None:
    emulator = env
    now = clock.now_ms()
    m = now - now % DAY - DAY  # yesterday 00:00: everything below is closed
    start, end = m, m + 6 * HOUR
    outage = (m + 2 * HOUR, m + 2 * HOUR + 20 * MIN)
    emulator.add_outage("ETHUSDT", outage[0], outage[1] - 1)
    span = ["--start", iso(ms_to_dt(start)), "--end", iso(ms_to_dt(end)), "--sink", "mysql"]
    for interval in ("5m", "1h"):
        cli.execute(["klines", "--interval", interval, "--symbols", "BTCUSDT,ETHUSDT", "--source", "rest", *span])
    cli.execute(["funding", "--symbols", "BTCUSDT", *span])
    (sink,) = open_sinks(["mysql"])
    try:
        sink._tx(
            lambda cur: cur.execute(
                "DELETE FROM klines_m5 WHERE symbol = 'BTCUSDT' AND open_time >= %s AND open_time < %s",
                (ms_to_dt(m + HOUR).replace(tzinfo=None), ms_to_dt(m + HOUR + 25 * MIN).replace(tzinfo=None)),
            )
        )
        assert sink.count(KLINES_M5, "BTCUSDT", ms_to_dt(start), ms_to_dt(end)) == 72 - 5
        # a row the old rule confirmed although the exchange has the candle (and the candle lost with it)
        lost = (m + 4 * HOUR, m + 5 * HOUR)
        sink._tx(
            lambda cur: cur.execute(
                "DELETE FROM klines_h1 WHERE symbol = 'BTCUSDT' AND open_time = %s",
                (ms_to_dt(lost[0]).replace(tzinfo=None),),
            )
        )
        old = GapRecord("klines_h1", "BTCUSDT", ms_to_dt(lost[0]), ms_to_dt(lost[1]), "old", "refetch:auto", 0)
        sink.record_gap(dataclasses.replace(old, status="legacy"))
    finally:
        sink.close()

    dag = load_module().build_dag(runtime="local")
    emulator.reset_stats()
    logical = pendulum.instance(ms_to_dt(end))
    dr = dag.test(logical_date=logical)
    assert dr.state == "success"
    assert emulator.count("/fapi/v1/klines") >= 2
    fills = [ti for ti in dr.get_task_instances() if ti.task_id == "fill"]
    assert len(fills) == 3 and all(ti.state == "success" for ti in fills)
    report = xcom(dr, "report")
    assert {k: report["totals"][k] for k in ("found", "filled", "confirmed", "remaining")} == {
        "found": 3,  # BTC m5 (ours), ETH m5 and h1 (the exchange's outage removes every interval)
        "filled": 1,
        "confirmed": 2,
        "remaining": 0,
    }
    rows = {(e["table"], e["symbol"]): e for e in report["symbols"]}
    assert rows[("klines_m5", "ETHUSDT")]["known_exchange_side"] == 1
    labels = sorted(ti.rendered_map_index for ti in fills)
    assert labels[0].startswith("klines_h1 ETHUSDT") and labels[1].startswith("klines_m5 BTCUSDT")
    assert rows[("klines_m5", "BTCUSDT")]["completeness"] == 1.0
    assert ("funding_rates", "BTCUSDT") in rows and ("klines_h1", "ETHUSDT") in rows
    (sink,) = open_sinks(["mysql"])
    try:
        assert sink.count(KLINES_M5, "BTCUSDT", ms_to_dt(start), ms_to_dt(end)) == 72
        assert sink.count(KLINES_H1, "BTCUSDT", ms_to_dt(start), ms_to_dt(end)) == 6  # re-checked: filled
        assert sink.gap_records(KLINES_H1, "BTCUSDT") == []  # and the legacy row is gone
        assert sink.known_gaps(KLINES_M5, "ETHUSDT") == [(ms_to_dt(outage[0]), ms_to_dt(outage[1]))]
        (row,) = sink.gap_records(KLINES_M5, "ETHUSDT")  # confirmed on evidence
        assert (row.status, row.source) == ("confirmed", "rest") and row.requests >= 1
        assert row.bound is not None and row.bound >= ms_to_dt(outage[1] + HOUR)  # settled when asked
        assert sink.known_gaps(KLINES_H1, "ETHUSDT") == [(ms_to_dt(outage[0]), ms_to_dt(outage[0] + HOUR))]
    finally:
        sink.close()

    emulator.reset_stats()
    dr2 = dag.test(logical_date=logical + timedelta(seconds=1))
    assert dr2.state == "success"
    # nothing left to fetch, the outage is remembered: only fundingInfo (each contract's funding interval) and the
    # exchange's clock (what is closed) are read, by detect and report
    assert emulator.count("/fapi/v1/fundingInfo") == emulator.count("/fapi/v1/time") == 2
    assert emulator.count() == 4
    assert xcom(dr2, "report")["totals"]["found"] == 0
    assert [ti.state for ti in dr2.get_task_instances() if ti.task_id == "fill"] in ([], ["skipped"])


@pytest.fixture
def readonly_default(env: Any, mysql_database: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """After the data is written as root, ``mysql_default`` becomes a user that can read but not write."""
    import uuid

    from tests.fixtures.databases import mysql_admin

    user, password = f"bx_ro_{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    admin = mysql_admin()
    cur = admin.cursor()
    hosts = ("%", "localhost", "127.0.0.1")
    for host in hosts:
        cur.execute(f"CREATE USER '{user}'@'{host}' IDENTIFIED BY '{password}'")
        cur.execute(f"GRANT SELECT, CREATE ON `{mysql_database}`.* TO '{user}'@'{host}'")

    def switch() -> None:
        monkeypatch.setenv("AIRFLOW_CONN_MYSQL_DEFAULT", f"mysql://{user}:{password}@127.0.0.1:3306/{mysql_database}")

    try:
        yield switch
    finally:
        for host in hosts:
            cur.execute(f"DROP USER IF EXISTS '{user}'@'{host}'")
        admin.close()


def test_dag_run_fails_when_a_hole_the_exchange_has_cannot_be_written(env: Any, readonly_default: Any) -> None:
    now = clock.now_ms()
    m = now - now % DAY - DAY
    span = ["--start", iso(ms_to_dt(m)), "--end", iso(ms_to_dt(m + 2 * HOUR)), "--sink", "mysql"]
    cli.execute(["klines", "--interval", "5m", "--symbols", "BTCUSDT", "--source", "rest", *span])
    (sink,) = open_sinks(["mysql"])
    try:
        sink._tx(
            lambda cur: cur.execute(
                "DELETE FROM klines_m5 WHERE open_time >= %s AND open_time < %s",
                (ms_to_dt(m + HOUR).replace(tzinfo=None), ms_to_dt(m + HOUR + 10 * MIN).replace(tzinfo=None)),
            )
        )
    finally:
        sink.close()
    readonly_default()
    dag = load_module().build_dag(runtime="local")
    for task in dag.tasks:
        task.retries = 0  # the write failure is persistent: fail at once
    dr = dag.test(logical_date=pendulum.instance(ms_to_dt(m + 2 * HOUR)))
    assert dr.state == "failed"
    states = {ti.task_id: ti.state for ti in dr.get_task_instances()}
    assert states == {"detect": "success", "chunk": "success", "fill": "failed", "verify": "failed", "report": "failed"}
    report = xcom(dr, "report", key="report")
    (hole,) = report["open"]
    assert (hole["table"], hole["symbol"], hole["start"]) == ("klines_m5", "BTCUSDT", iso(ms_to_dt(m + HOUR)))
    assert hole["reason"] == "no fill result (its task failed or did not run)"
    assert report["totals"]["remaining"] == 1 and report["totals"]["confirmed"] == 0
    assert env.count("/fapi/v1/klines") >= 1  # the exchange had the candles
