"""The listener plugin: loaded by Airflow's plugins manager, turns real state changes into job metrics and spans."""

from __future__ import annotations

import logging

import pytest
from opentelemetry import trace

from binance_extractor import telemetry
from tests.plugins.airflow_run import DagRunResult, run_dag

DAG_ID = "binance_listener_probe"
API_KEY = "Zq8vN2pLr5tXw9yB3cD6fG1hJ4kM7nP0sT3uV6wX9zA2bC5eF8gH1jK4lM7nO0pQ"
DAG_SOURCE = f"""
import pendulum
from airflow.sdk import DAG, task

with DAG("{DAG_ID}", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")) as dag:

    @task
    def plan():
        return ["BTCUSDT", "ETHUSDT", "XRPUSDT"]

    @task(map_index_template="{{{{ task.op_kwargs['symbol'] }}}}")
    def extract(symbol):
        if symbol == "ETHUSDT":
            raise RuntimeError("pod died")
        return symbol

    extract.expand(symbol=plan())
"""


@pytest.fixture(scope="module")
def probe(airflow_db: None, tmp_path_factory: pytest.TempPathFactory) -> DagRunResult:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BINANCE_API_KEY", API_KEY)
        return run_dag(tmp_path_factory.mktemp("listener_dags"), DAG_ID, DAG_SOURCE)


def _our_listener_registered() -> bool:
    from airflow.listeners.listener import get_listener_manager

    return any(getattr(p, "__name__", "").endswith("binance_listener") for p in get_listener_manager().pm.get_plugins())


def test_airflow_loads_the_plugin_and_its_listener(airflow_db: None) -> None:
    from airflow import plugins_manager

    info = {p["name"]: p for p in plugins_manager.get_plugin_info(attrs_to_dump=["name", "listeners"])}
    assert info["binance_observability"]["listeners"] == ["binance_listener"]
    assert _our_listener_registered()


def test_task_outcomes_and_durations_by_dag_and_task(probe: DagRunResult) -> None:
    assert probe.state == "failed"
    task = {"job_type": "airflow.task", "dag_id": DAG_ID}
    assert probe.value("binance.jobs", **task, task_id="plan", outcome="success") == 1
    assert probe.value("binance.jobs", **task, task_id="extract", outcome="success") == 2
    assert probe.value("binance.jobs", **task, task_id="extract", outcome="failed", error_class="RuntimeError") == 1
    assert probe.value("binance.jobs.started", **task, task_id="extract") == 3
    assert probe.count("binance.job.duration", **task, task_id="extract") == 3
    assert probe.value("binance.job.duration", **task, task_id="extract") > 0
    # no per-map-index label: bounded cardinality
    assert all("map_index" not in p["attributes"] for p in probe.metrics["binance.jobs"])


def test_dag_run_outcome_and_duration(probe: DagRunResult) -> None:
    run = {"job_type": "airflow.dag_run", "dag_id": DAG_ID}
    assert probe.value("binance.jobs", **run, outcome="failed") == 1
    assert probe.value("binance.jobs", **run, outcome="success") == 0
    assert probe.count("binance.job.duration", **run, outcome="failed") == 1
    # the run lasts at least as long as its longest task
    longest_task = max(
        p["value"] for p in probe.metrics["binance.job.duration"] if p["attributes"]["job_type"] == "airflow.task"
    )
    assert probe.value("binance.job.duration", **run) >= longest_task / 3


def test_a_span_per_task_instance(probe: DagRunResult) -> None:
    spans = [s for s in probe.spans if s.name == "airflow.task"]
    by_index = {
        s.attributes["airflow.task_instance.map_index"]: s
        for s in spans
        if s.attributes["airflow.task_id"] == "extract"
    }
    assert sorted(by_index) == [0, 1, 2]
    failed = by_index[1]
    assert failed.attributes["airflow.dag_id"] == DAG_ID
    assert failed.attributes["airflow.dag_run.run_id"] == probe.run_id
    assert failed.attributes["airflow.outcome"] == "failed"
    assert failed.status.status_code == trace.StatusCode.ERROR
    assert any(e.attributes.get("exception.type") == "RuntimeError" for e in failed.events)
    assert by_index[0].status.status_code == trace.StatusCode.UNSET


def test_hooks_with_orm_objects_from_the_api_server_path(probe: DagRunResult) -> None:
    """State changes made through the API reach the listener with ORM TaskInstance / DagRun objects."""
    from airflow.listeners.listener import get_listener_manager
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState

    with create_session() as session:
        dag_run = session.query(DagRun).filter_by(dag_id=DAG_ID, run_id=probe.run_id).one()
        ti = session.query(TaskInstance).filter_by(dag_id=DAG_ID, run_id=probe.run_id, task_id="plan").one()
        session.expunge_all()
    hooks = get_listener_manager().hook
    with telemetry.capture() as cap:
        hooks.on_task_instance_success(previous_state=TaskInstanceState.FAILED, task_instance=ti)
        hooks.on_task_instance_failed(previous_state=TaskInstanceState.RUNNING, task_instance=ti, error="marked")
        hooks.on_dag_run_success(dag_run=dag_run, msg="marked success")
        assert cap.value("binance.jobs", job_type="airflow.task", task_id="plan", outcome="success") == 1
        assert cap.value("binance.jobs", job_type="airflow.task", task_id="plan", outcome="failed") == 1
        expected = (ti.end_date - ti.start_date).total_seconds()
        assert cap.value("binance.job.duration", task_id="plan", outcome="success") == pytest.approx(expected)
        run_expected = (dag_run.end_date - dag_run.start_date).total_seconds()
        assert cap.value("binance.job.duration", job_type="airflow.dag_run", outcome="success") == pytest.approx(
            run_expected
        )
        assert cap.spans("airflow.task") == []  # spans only in the task runner, not for API-side changes


def test_hooks_never_raise(airflow_db: None, caplog: pytest.LogCaptureFixture) -> None:
    from airflow.listeners.listener import get_listener_manager

    get_listener_manager()  # loads Airflow's plugins, which puts the plugins folder on sys.path
    import binance_listener

    class Broken:
        @property
        def dag_id(self) -> str:
            raise RuntimeError("unreadable")

    with caplog.at_level(logging.ERROR, logger=binance_listener.__name__):
        binance_listener.on_dag_run_failed(dag_run=Broken(), msg="x")
        binance_listener.on_task_instance_running(previous_state=None, task_instance=Broken())
    assert len([r for r in caplog.records if r.name == binance_listener.__name__]) == 2


def test_every_hook_is_registered_against_airflows_hookspecs(airflow_db: None) -> None:
    """pluggy validates each hookimpl's argument names against Airflow's hookspecs when registering it."""
    from airflow.listeners.listener import get_listener_manager

    hooks = get_listener_manager().pm.hook
    for name in (
        "on_starting",
        "before_stopping",
        "on_dag_run_running",
        "on_dag_run_success",
        "on_dag_run_failed",
        "on_task_instance_running",
        "on_task_instance_success",
        "on_task_instance_failed",
    ):
        owners = [impl.plugin_name for impl in getattr(hooks, name).get_hookimpls()]
        assert any(owner.endswith("binance_listener") for owner in owners), (name, owners)


def test_the_api_key_is_masked_in_airflow_task_logs(probe: DagRunResult) -> None:
    """In-process tasks log through Airflow: the key from the environment is registered with its masker."""
    from airflow.sdk._shared.secrets_masker import redact

    assert redact(f"headers X-MBX-APIKEY={API_KEY}") == "headers X-MBX-APIKEY=***"
