"""Alerting hooks: failure callbacks in a real DAG run, the freshness deadline through Airflow's own machinery."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import pytest

from binance_extractor import freshness, telemetry, timeframes
from binance_extractor.airflow import callbacks
from binance_extractor.kinds import DataKind
from tests.plugins.airflow_run import DagRunResult, run_dag

DAG_ID = "binance_alerts_probe"
DAG_SOURCE = f"""
import pendulum
from airflow.sdk import DAG, task
from binance_extractor.airflow import callbacks
from binance_extractor.errors import InputError

with DAG(
    "{DAG_ID}",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    on_failure_callback=callbacks.on_dag_failure,
) as dag:

    @task(on_failure_callback=callbacks.on_task_failure, map_index_template="{{{{ task.op_kwargs['symbol'] }}}}")
    def extract(symbol):
        if symbol == "DOGEUSDT":
            raise InputError("unknown symbol DOGEUSDT")
        return symbol

    extract.expand(symbol=["BTCUSDT", "DOGEUSDT"])
"""

M5 = timeframes.parse("5m")


@pytest.fixture(scope="module")
def probe(airflow_db: None, tmp_path_factory: pytest.TempPathFactory) -> DagRunResult:
    return run_dag(tmp_path_factory.mktemp("alerts_dags"), DAG_ID, DAG_SOURCE)


def test_task_failure_callback_emits_one_event_and_one_metric(probe: DagRunResult) -> None:
    (event,) = probe.events("binance.task_failure")
    assert event.levelno == logging.ERROR
    assert (event.dag_id, event.task_id, event.map_index) == (DAG_ID, "extract", 1)  # type: ignore[attr-defined]
    assert event.symbol == "DOGEUSDT"  # type: ignore[attr-defined]
    assert event.error_class == "InputError"  # type: ignore[attr-defined]
    assert event.run_id == probe.run_id  # type: ignore[attr-defined]
    message = event.getMessage()
    for part in (f"dag_id={DAG_ID}", "task_id=extract", "map_index=1", "symbol=DOGEUSDT", "error_class=InputError"):
        assert part in message
    labels = {"job_type": "task_failure", "outcome": "failure", "dag_id": DAG_ID, "task_id": "extract"}
    assert probe.value("binance.jobs", **labels, error_class="InputError") == 1
    assert probe.value("binance.alerts", kind="task_failure", dag_id=DAG_ID) == 1


def test_dag_failure_callback_emits_one_event_and_one_metric(probe: DagRunResult) -> None:
    assert probe.state == "failed"
    (event,) = probe.events("binance.dag_failure")
    assert event.dag_id == DAG_ID and event.run_id == probe.run_id  # type: ignore[attr-defined]
    assert event.task_id == "extract"  # type: ignore[attr-defined]
    assert event.error_class  # type: ignore[attr-defined]
    assert probe.value("binance.jobs", job_type="dag_failure", outcome="failure", dag_id=DAG_ID) == 1
    assert probe.value("binance.alerts", kind="dag_failure", dag_id=DAG_ID) == 1


def test_symbol_from_the_pods_job_spec_not_its_arguments() -> None:
    from binance_extractor.airflow.jobspecs import ExtractionSpec
    from binance_extractor.airflow.operators import TracedKubernetesPodOperator

    spec = ExtractionSpec(DataKind.KLINES, "SOLUSDT", datetime(2024, 1, 1, tzinfo=UTC), timeframe=M5, incremental=True)
    pod = TracedKubernetesPodOperator(
        task_id="extract", namespace="binance", image="binance-extractor:test", **spec.task_kwargs(pod=True)
    )
    assert callbacks.symbol_of({"task": pod}) == "SOLUSDT"
    pod.arguments = ["funding", "--symbols=BTCUSDT,ETHUSDT"]  # arguments are never parsed back
    assert callbacks.symbol_of({"task": pod}) == "SOLUSDT"
    local = type("T", (), {"op_kwargs": spec.task_kwargs(pod=False)})()
    assert callbacks.symbol_of({"task": local}) == "SOLUSDT"
    assert callbacks.symbol_of({}) is None


def test_a_callback_that_breaks_does_not_raise(caplog: pytest.LogCaptureFixture) -> None:
    class Exploding(dict):
        def get(self, *args: object) -> object:
            raise RuntimeError("context unreadable")

    with caplog.at_level(logging.ERROR, logger="binance_extractor.alerts"):
        callbacks.on_task_failure(Exploding())
        callbacks.on_dag_failure(Exploding())
    assert [r.getMessage() for r in caplog.records if r.name == "binance_extractor.alerts"] == [
        "binance on_task_failure callback failed",
        "binance on_dag_failure callback failed",
    ]


# --------------------------------------------------------------------------- freshness


def test_freshness_deadline_is_an_airflow_deadline_alert() -> None:
    from airflow.sdk import DAG
    from airflow.sdk.definitions.callback import AsyncCallback
    from airflow.sdk.definitions.deadline import DeadlineAlert, DeadlineReference
    from airflow.serialization.serialized_objects import DagSerialization

    alert = callbacks.freshness_deadline(timedelta(minutes=5), timeframe="m5")
    assert isinstance(alert, DeadlineAlert)
    assert alert.reference == DeadlineReference.DAGRUN_QUEUED_AT
    assert alert.interval == timedelta(minutes=5)
    assert isinstance(alert.callback, AsyncCallback)
    assert alert.callback.path == "binance_extractor.airflow.callbacks.on_freshness_deadline"
    assert alert.callback.kwargs == {"timeframe": "m5", "interval_s": 300}

    dag = DAG("binance_klines_m5_probe", schedule=None, deadline=alert)
    serialized = DagSerialization.to_dict(dag)
    assert "on_freshness_deadline" in str(serialized)


def test_freshness_callback_runs_in_airflows_callback_trigger() -> None:
    """The triggerer runs deadline callbacks through ``CallbackTrigger``: use exactly that path."""
    from airflow.models.callback import CallbackState
    from airflow.triggers.callback import PAYLOAD_STATUS_KEY, CallbackTrigger

    alert = callbacks.freshness_deadline(timedelta(minutes=15), timeframe="m15")
    context = {
        "dag_run": {"dag_id": "binance_klines_m15", "dag_run_id": "scheduled__2026-11-26T09:00:00+00:00"},
        "deadline": {"id": "1", "deadline_time": "2026-11-26T09:30:00+00:00"},
    }
    trigger = CallbackTrigger(
        callback_path=alert.callback.path, callback_kwargs={**alert.callback.kwargs, "context": context}
    )

    async def collect() -> list[dict]:
        return [event.payload async for event in trigger.run()]

    keep: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = keep.append  # type: ignore[method-assign]
    logging.getLogger("binance_extractor.alerts").addHandler(handler)
    try:
        with telemetry.capture() as cap:
            payloads = asyncio.run(collect())
            missed = cap.value("binance.jobs", job_type="freshness_deadline", outcome="missed", timeframe="m15")
            alerts_count = cap.value("binance.alerts", kind="freshness_deadline", dag_id="binance_klines_m15")
    finally:
        logging.getLogger("binance_extractor.alerts").removeHandler(handler)

    assert [p[PAYLOAD_STATUS_KEY] for p in payloads] == [CallbackState.RUNNING, CallbackState.SUCCESS]
    assert missed == 1 and alerts_count == 1
    (event,) = [r for r in keep if getattr(r, "event", None) == "binance.freshness_deadline"]
    assert event.dag_id == "binance_klines_m15"  # type: ignore[attr-defined]
    assert event.run_id == "scheduled__2026-11-26T09:00:00+00:00"  # type: ignore[attr-defined]
    assert event.timeframe == "m15" and event.interval_s == 900  # type: ignore[attr-defined]


def test_record_freshness_lag() -> None:
    now = datetime(2026, 11, 26, 10, 7, 30, tzinfo=UTC)  # m5 candle 10:05 still forming, 10:00 is the newest closed
    with telemetry.capture() as cap:
        assert freshness.record_freshness("BTCUSDT", M5, datetime(2026, 11, 26, 10, 0, tzinfo=UTC), now=now) == 0
        assert cap.value("binance.freshness.lag", symbol="BTCUSDT", timeframe="5m") == 0
        lag = freshness.record_freshness("BTCUSDT", M5, datetime(2026, 11, 26, 9, 40, tzinfo=UTC), now=now)
        assert lag == 20 * 60  # 09:45, 09:50, 09:55, 10:00 missing
        assert cap.value("binance.freshness.lag", symbol="BTCUSDT", timeframe="5m") == 1200
        assert freshness.record_freshness("ETHUSDT", timeframes.parse("1h"), None, now=now) == -1
        assert cap.points("binance.freshness.lag")[0].attributes["timeframe"] == "5m"
        assert cap.points("binance.freshness.lag")[0].attributes["kind"] == "klines"  # trade klines by default
        assert len(cap.points("binance.freshness.lag")) == 1


def test_backfill_runs_do_not_raise_freshness_alerts() -> None:
    context = {"dag_run": {"dag_id": "binance_klines_m5", "dag_run_id": "backfill__x", "run_type": "backfill"}}
    with telemetry.capture() as cap:
        result = asyncio.run(callbacks.on_freshness_deadline(timeframe="m5", interval_s=300, context=context))
        assert result["skipped"] is True
        assert cap.points("binance.alerts") == []
