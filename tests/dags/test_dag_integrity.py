"""DagBag integrity: the DAG folder parses cleanly and offline, with the promised ids, schedules and settings."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pendulum
import pytest

from tests.fixtures.offline import offline_parse_env

ROOT = Path(__file__).resolve().parents[2]
KLINES = {
    "binance_klines_m5": timedelta(minutes=5),
    "binance_klines_m15": timedelta(minutes=15),
    "binance_klines_m30": timedelta(minutes=30),
    "binance_klines_h1": timedelta(hours=1),
    "binance_klines_d1": timedelta(days=1),
}
HOURLY = {"binance_funding_rates", "binance_trades"}
ALL = set(KLINES) | HOURLY | {"binance_klines_manual"}


def _runs(dag, first_start: datetime, count: int):
    """The next ``count`` scheduled runs from ``first_start`` (catch-up on, so independent of the wall clock)."""
    from airflow.serialization.encoders import coerce_to_core_timetable
    from airflow.timetables.base import TimeRestriction

    tt = coerce_to_core_timetable(dag.timetable)
    restriction = TimeRestriction(earliest=pendulum.instance(first_start), latest=None, catchup=True)
    out, last = [], None
    for _ in range(count):
        info = tt.next_dagrun_info(last_automated_data_interval=last, restriction=restriction)
        out.append(info)
        last = info.data_interval
    return out


def test_no_import_errors_and_exact_ids(dagbag):
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == ALL | {"binance_klines_gap_filler", "binance_maintenance"}  # tested on their own


# Imports every DAG file in a fresh interpreter and prints the DAG ids and every network attempt (audit hooks).
PARSE_CHILD = """
import gc, glob, importlib, json, os, sys
attempts = []
def audit(event, args):
    if event in ("socket.connect", "socket.getaddrinfo", "socket.sendto", "http.client.connect"):
        attempts.append([event, repr(args)[:200]])
sys.addaudithook(audit)
sys.path.insert(0, "dags")
for path in sorted(glob.glob("dags/*.py")):
    importlib.import_module(os.path.basename(path)[:-3])
from airflow.sdk import DAG
ids = sorted({o.dag_id for o in gc.get_objects() if type(o) is DAG})
print(json.dumps({"dag_ids": ids, "network": attempts}))
"""


@pytest.mark.parametrize("runtime", ["local", "kubernetes"])
def test_parse_is_offline(runtime):
    """A fresh interpreter parses every DAG file with no exchange or DB reachable (both point at closed ports)
    and opens no socket at all. How long parsing takes is a figure of benchmarks/bench_parse.py, not a test."""
    env = offline_parse_env(runtime)
    out = subprocess.run([sys.executable, "-c", PARSE_CHILD], cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["network"] == []
    assert set(result["dag_ids"]) >= ALL | {"binance_klines_gap_filler", "binance_maintenance"}


@pytest.mark.parametrize("dag_id", sorted(KLINES))
def test_klines_schedule_is_one_candle_window(dagbag, dag_id):
    dag = dagbag.dags[dag_id]
    assert type(dag.timetable).__name__ == "CronDataIntervalTimetable"
    day = datetime(2024, 1, 1, tzinfo=UTC)
    period = KLINES[dag_id]
    per_day = int(timedelta(days=1) / period)
    runs = _runs(dag, day, per_day + 1)
    # every data interval is exactly one candle, back to back, and the run fires when it closes
    for info in runs:
        assert info.data_interval.end - info.data_interval.start == period
        assert info.run_after == info.data_interval.end
    assert runs[0].data_interval.start == day
    in_day = [r for r in runs if day <= r.data_interval.start < day + timedelta(days=1)]
    assert len(in_day) == per_day  # m5 288, m15 96, m30 48, h1 24, d1 1


def test_next_run_times_pinned(dagbag):
    """After 2024-01-01T00:07 UTC, the next run of each DAG and the data interval it extracts."""
    t = datetime(2024, 1, 1, 0, 7, tzinfo=UTC)
    expected = {
        "binance_klines_m5": ("00:05", "00:10"),
        "binance_klines_m15": ("00:00", "00:15"),
        "binance_klines_m30": ("00:00", "00:30"),
        "binance_klines_h1": ("00:00", "01:00"),
        "binance_klines_d1": ("2024-01-01 00:00", "2024-01-02 00:00"),
        "binance_funding_rates": ("00:00", "01:00"),
        "binance_trades": ("00:00", "01:00"),
    }
    for dag_id, (lo, hi) in expected.items():
        runs = _runs(dagbag.dags[dag_id], datetime(2023, 12, 31, tzinfo=UTC), 400)
        nxt = next(r for r in runs if r.run_after > t)
        fmt = "%Y-%m-%d %H:%M" if len(lo) > 5 else "%H:%M"
        got = (nxt.data_interval.start.strftime(fmt), nxt.data_interval.end.strftime(fmt))
        assert got == (lo, hi), dag_id
        assert nxt.run_after == nxt.data_interval.end


def test_manual_dag_is_unscheduled_with_form(dagbag):
    dag = dagbag.dags["binance_klines_manual"]
    assert type(dag.timetable).__name__ == "NullTimetable"
    schema = {k: dag.params.get_param(k).schema for k in dag.params}
    assert set(schema) == {"symbols", "interval", "start", "end", "sinks"}
    assert schema["interval"]["enum"][:3] == ["1m", "3m", "5m"] and "1M" in schema["interval"]["enum"]
    assert schema["start"]["format"] == schema["end"]["format"] == "date-time"
    assert schema["symbols"]["items"]["pattern"]
    assert set(schema["sinks"]["items"]["enum"]) == {"sqlite", "mysql", "postgres", "mongo", "jsonl"}


@pytest.mark.parametrize("dag_id", sorted(ALL))
def test_dag_settings(dagbag, dag_id):
    dag = dagbag.dags[dag_id]
    assert dag.catchup is False
    assert dag.max_active_runs == (4 if dag_id == "binance_klines_manual" else 1)
    assert dag.doc_md and dag_id.split("_")[1] in dag.doc_md and "Airflow DAG" in dag.doc_md
    assert "binance" in dag.tags
    for task in dag.tasks:
        assert task.retries == 3
        assert task.retry_exponential_backoff == 2.0
        assert task.max_retry_delay == timedelta(minutes=10)
    # every task calling the exchange runs in the binance_api pool; the others don't hold a slot
    pools = {t.task_id: t.pool for t in dag.tasks}
    first = "validate_request" if dag_id == "binance_klines_manual" else "resolve_symbols"
    assert pools == {first: "binance_api", "plan": "default_pool", "extract": "binance_api", "summary": "default_pool"}
    extract = dag.get_task("extract")
    assert extract.map_index_template
    assert [type(o).__name__ for o in dag.get_task("summary").outlets] in (["Asset"], ["AssetAlias"])


def test_assets_name_the_tables(dagbag):
    uris = {d: dagbag.dags[d].get_task("summary").outlets[0] for d in ALL - {"binance_klines_manual"}}
    assert uris["binance_klines_m5"].uri == "x-binance://futures-um/klines_m5"
    assert uris["binance_funding_rates"].name == "binance.funding_rates"
    assert uris["binance_trades"].name == "binance.agg_trades"


def test_failure_callbacks_and_freshness_deadlines(dagbag):
    """Every DAG alerts on failure (DAG and task); a klines run stalled for one candle interval fails (and alerts)."""
    from binance_extractor.airflow import callbacks

    for dag_id, dag in dagbag.dags.items():
        assert callbacks.on_dag_failure in _callbacks(dag.on_failure_callback), dag_id
        for task in dag.tasks:
            assert callbacks.on_task_failure in _callbacks(task.on_failure_callback), f"{dag_id}.{task.task_id}"
    for dag_id, interval in KLINES.items():
        assert dagbag.dags[dag_id].dagrun_timeout == interval


def _callbacks(value):
    return value if isinstance(value, list) else [value]


def test_runs_due_more_often_take_executor_slots_first(dagbag):
    """At the hour every scheduled DAG but d1 fires at once: m5's tasks (a 5-minute freshness budget) are queued
    ahead of m15's, m30's, then h1's and trades', funding's and d1's (each task's own weight, not its
    downstream sum, so a DAG's size does not decide it)."""
    order = [*KLINES, "binance_trades", "binance_funding_rates"]
    weights = {}
    for dag_id in order:
        tasks = dagbag.dags[dag_id].tasks
        assert {t.weight_rule for t in tasks} == {"absolute"}, dag_id
        (weights[dag_id],) = {t.priority_weight for t in tasks}
    assert weights["binance_klines_m5"] > weights["binance_klines_m15"] > weights["binance_klines_m30"]
    assert weights["binance_klines_m30"] > weights["binance_klines_h1"] == weights["binance_trades"]
    assert weights["binance_trades"] > weights["binance_funding_rates"] > weights["binance_klines_d1"] == 1
