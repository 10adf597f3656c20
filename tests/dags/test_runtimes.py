"""The two runtimes run the same argv: a pod per mapped task (rendered offline) or an in-process task."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from binance_extractor import timeframes
from binance_extractor.airflow import dagfactory, jobspecs, orchestration
from binance_extractor.airflow.jobspecs import ExtractionSpec
from binance_extractor.kinds import DataKind

T0 = datetime(2024, 1, 1, tzinfo=UTC)
M5 = timeframes.parse("5m")


@pytest.fixture(scope="module")
def pod_dag():
    return dagfactory.klines_dag("m5", doc_md="Airflow DAG m5 (test)", runtime="kubernetes")


def _pod(dag, argv, monkeypatch=None):
    op = dag.get_task("extract").unmap({"arguments": argv})
    return op, op.build_pod_request_obj(dry_run=True)


def test_pod_and_local_task_get_identical_argv_but_the_xcom_flag(pod_dag, monkeypatch):
    local_dag = dagfactory.klines_dag("m5", doc_md="Airflow DAG m5 (test)", runtime="local")
    assert local_dag.get_task("extract").operator_class.__name__ == "_PythonDecoratedOperator"
    assert pod_dag.get_task("extract").operator_class.__name__ == "TracedKubernetesPodOperator"
    kw = {"run_type": "scheduled", "data_interval_start": T0, "data_interval_end": T0 + timedelta(minutes=5)}
    local = orchestration.plan_scheduled(DataKind.KLINES, ["BTCUSDT", "ETHUSDT"], timeframe=M5, **kw)
    pods = orchestration.plan_scheduled(DataKind.KLINES, ["BTCUSDT", "ETHUSDT"], timeframe=M5, xcom=True, **kw)
    for spec_local, spec_pod in zip(local, pods, strict=True):
        argv_local = spec_local.to_argv()
        op, pod = _pod(pod_dag, spec_pod.to_argv())
        container = next(c for c in pod.spec.containers if c.name == "base")
        assert container.args == [*argv_local, "--xcom-file", jobspecs.XCOM_FILE]
        assert container.command == ["python", "-m", "binance_extractor"]  # from the pod template
        assert container.image == "binance-extractor:0.1.0"
        assert pod.metadata.namespace == "petrosa-apps"
        assert any(c.name == "airflow-xcom-sidecar" for c in pod.spec.containers)
        assert op.pool == "binance_api" and op.on_finish_action.value == "delete_pod"


def test_image_is_overridable_at_parse_time(monkeypatch):
    monkeypatch.setenv("BINANCE_EXTRACTOR_IMAGE", "registry.example/binance-extractor:9.9.9")
    dag = dagfactory.funding_dag(doc_md="x", runtime="kubernetes")
    _, pod = _pod(dag, orchestration.build_arguments(DataKind.FUNDING, "BTCUSDT", end=T0, xcom=True))
    assert pod.spec.containers[0].image == "registry.example/binance-extractor:9.9.9"


def test_traceparent_from_the_current_span(pod_dag):
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("test")
    op, _ = _pod(pod_dag, ["klines", "--interval", "5m", "--symbols", "BTCUSDT"])
    with tracer.start_as_current_span("task") as span:
        values = op.add_trace_env()
        op.add_trace_env()  # idempotent: a retry does not duplicate it
    trace_id = format(span.get_span_context().trace_id, "032x")
    pod = op.build_pod_request_obj(dry_run=True)
    env = [e for e in pod.spec.containers[0].env if e.name == "TRACEPARENT"]
    assert len(env) == 1 and env[0].value == values["TRACEPARENT"]
    assert env[0].value.startswith(f"00-{trace_id}-")
    # the template's own env is still there
    assert any(e.name == "OTEL_SERVICE_NAME" for e in pod.spec.containers[0].env)


def test_map_index_label_renders_the_specs_label(pod_dag):
    env = pod_dag.get_template_env()
    spec = ExtractionSpec(DataKind.KLINES, "SOLUSDT", T0, timeframe=M5, incremental=True)
    pod_op = pod_dag.get_task("extract").unmap(spec.task_kwargs(pod=True))
    assert pod_op.arguments == spec.to_argv() and pod_op.spec == spec.to_dict()
    assert env.from_string(dagfactory.POD_LABEL).render(task=pod_op) == "SOLUSDT"
    local = env.from_string(dagfactory.LOCAL_LABEL).render(
        task=type("T", (), {"op_kwargs": spec.task_kwargs(pod=False)})
    )
    assert local == "SOLUSDT"


def test_kubernetes_summary_reads_last_times_from_the_pods_results():
    results = [
        [{"symbol": "BTCUSDT", "rows_written": 3, "last_time": "2024-01-01T00:55:00.000Z"}],
        [{"symbol": "BTCUSDT", "rows_written": 0, "last_time": "2024-01-01T00:50:00.000Z"}],
        [{"symbol": "ETHUSDT", "rows_written": 0, "last_time": None}],
    ]
    assert orchestration.last_times_from_results(results) == {"BTCUSDT": T0 + timedelta(minutes=55)}
    assert orchestration.rows_per_symbol(results) == {"BTCUSDT": 3, "ETHUSDT": 0}
