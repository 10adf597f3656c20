"""Airflow listener plugin: DAG-run and task-instance state changes -> job metrics (and a span per task).

Runs inside Airflow's own processes (scheduler and API server for DAG runs, the task runner for task instances),
so scheduled runs report duration and outcome by DAG and task even when a pod dies before it can flush anything.

Spans: ``on_starting`` installs the SDK (``telemetry.setup()``) in every Airflow component. The supervisor does
it before forking the task process, so Airflow's own task span (``worker.<task_id>``, parented on the DAG run's
trace carrier) is recorded and exported even when Airflow's ``[traces] otel_on`` is off. Where no recording task
span exists (``dag.test()``, a process without the SDK yet), the plugin opens an ``airflow.task`` span itself under
the task's trace carrier. Code that starts pods inside the task puts ``telemetry.inject_traceparent()`` into the
pod's environment, so the pod's spans join the DAG run's trace.

Every hook swallows its own errors: observability must never change a task's outcome.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from datetime import UTC, datetime
from typing import Any

from airflow.listeners import hookimpl
from airflow.plugins_manager import AirflowPlugin
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from binance_extractor import logs, telemetry

log = logging.getLogger(__name__)

TASK_JOB = "airflow.task"
DAG_RUN_JOB = "airflow.dag_run"
FLUSH_TIMEOUT_MS = 3000  # a task process waits at most this long for a collector that is down
_open_spans: dict[tuple[Any, ...], tuple[Any, Any]] = {}
_spans_lock = threading.Lock()


def _value(obj: Any, name: str) -> Any:
    value = getattr(obj, name, None)
    return getattr(value, "value", value)  # enums (states) -> plain strings


def _duration_s(obj: Any) -> float | None:
    start = getattr(obj, "start_date", None)
    if start is None:
        return None
    end = getattr(obj, "end_date", None) or datetime.now(UTC)
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    if end.tzinfo is None:
        end = end.replace(tzinfo=UTC)
    return max(0.0, (end - start).total_seconds())


def _ti_key(ti: Any) -> tuple[Any, ...]:
    return tuple(_value(ti, name) for name in ("dag_id", "task_id", "run_id", "map_index", "try_number"))


def _in_task_runner(ti: Any) -> bool:
    return type(ti).__name__ == "RuntimeTaskInstance"


def _record(job: str, outcome: str, obj: Any, **attrs: Any) -> None:
    telemetry.setup()
    labels = {"job_type": job, "outcome": outcome, **attrs}
    telemetry.instruments.counter("binance.jobs").add(1, labels)
    duration = _duration_s(obj)
    if duration is not None:
        telemetry.instruments.histogram("binance.job.duration", unit="s").record(duration, labels)


def _start_task_span(ti: Any) -> None:
    if trace.get_current_span().is_recording():
        return  # Airflow's own tracing already records this task
    map_index = _value(ti, "map_index")
    attributes = {
        "airflow.dag_id": _value(ti, "dag_id"),
        "airflow.task_id": _value(ti, "task_id"),
        "airflow.dag_run.run_id": _value(ti, "run_id"),
        "airflow.task_instance.map_index": map_index if map_index is not None else -1,
        "airflow.task_instance.try_number": _value(ti, "try_number"),
    }
    parent = None
    carrier = getattr(ti, "context_carrier", None)
    if not trace.get_current_span().get_span_context().is_valid and isinstance(carrier, dict) and carrier:
        parent = TraceContextTextMapPropagator().extract(carrier)  # the DAG run's trace, as Airflow stored it
    current = telemetry.tracer().start_span(
        TASK_JOB, context=parent, attributes={k: v for k, v in attributes.items() if v is not None}
    )
    token = otel_context.attach(trace.set_span_in_context(current))
    with _spans_lock:
        _open_spans[_ti_key(ti)] = (current, token)


def _end_task_span(ti: Any, outcome: str, error: Any = None) -> None:
    with _spans_lock:
        entry = _open_spans.pop(_ti_key(ti), None)
    if entry is None:
        return
    current, token = entry
    current.set_attribute("airflow.outcome", outcome)
    if isinstance(error, BaseException):
        current.record_exception(error)
    if outcome != "success":
        current.set_status(Status(StatusCode.ERROR, description=type(error).__name__ if error else outcome))
    current.end()
    with contextlib.suppress(Exception):  # out of order only means the context was already replaced
        otel_context.detach(token)


def _mask_env_secrets() -> None:
    """Register the API key from the environment with Airflow's masker: in-process tasks log through Airflow.

    (Connection passwords, where the hook reads the key from ``binance_default``, are masked by Airflow itself.)
    """
    from airflow.sdk.log import mask_secret

    for name in logs.SECRET_ENV:
        value = os.environ.get(name)
        if value:
            mask_secret(value, name=name)


@hookimpl
def on_starting(component: Any) -> None:
    try:
        telemetry.setup()
    except Exception:
        log.exception("binance telemetry setup failed")


@hookimpl
def before_stopping(component: Any) -> None:
    try:
        telemetry.force_flush(FLUSH_TIMEOUT_MS)
    except Exception:
        log.exception("binance telemetry flush failed")


@hookimpl
def on_task_instance_running(previous_state: Any, task_instance: Any) -> None:
    try:
        telemetry.setup()
        attrs = {"dag_id": _value(task_instance, "dag_id"), "task_id": _value(task_instance, "task_id")}
        telemetry.instruments.counter("binance.jobs.started").add(1, {"job_type": TASK_JOB, **attrs})
        if _in_task_runner(task_instance):
            _mask_env_secrets()
            _start_task_span(task_instance)
    except Exception:
        log.exception("binance listener on_task_instance_running failed")


@hookimpl
def on_task_instance_success(previous_state: Any, task_instance: Any) -> None:
    try:
        _end_task_span(task_instance, "success")
        _record(
            TASK_JOB,
            "success",
            task_instance,
            dag_id=_value(task_instance, "dag_id"),
            task_id=_value(task_instance, "task_id"),
        )
    except Exception:
        log.exception("binance listener on_task_instance_success failed")


@hookimpl
def on_task_instance_failed(previous_state: Any, task_instance: Any, error: Any) -> None:
    try:
        state = _value(task_instance, "state")
        outcome = state if state in ("up_for_retry", "failed") else "failed"
        _end_task_span(task_instance, outcome, error)
        error_class = type(error).__name__ if isinstance(error, BaseException) else None
        _record(
            TASK_JOB,
            outcome,
            task_instance,
            dag_id=_value(task_instance, "dag_id"),
            task_id=_value(task_instance, "task_id"),
            error_class=error_class,
        )
    except Exception:
        log.exception("binance listener on_task_instance_failed failed")


@hookimpl
def on_dag_run_running(dag_run: Any, msg: str) -> None:
    try:
        telemetry.setup()
        telemetry.instruments.counter("binance.jobs.started").add(
            1, {"job_type": DAG_RUN_JOB, "dag_id": _value(dag_run, "dag_id")}
        )
    except Exception:
        log.exception("binance listener on_dag_run_running failed")


@hookimpl
def on_dag_run_success(dag_run: Any, msg: str) -> None:
    try:
        _record(DAG_RUN_JOB, "success", dag_run, dag_id=_value(dag_run, "dag_id"))
    except Exception:
        log.exception("binance listener on_dag_run_success failed")


@hookimpl
def on_dag_run_failed(dag_run: Any, msg: str) -> None:
    try:
        _record(DAG_RUN_JOB, "failed", dag_run, dag_id=_value(dag_run, "dag_id"), reason=msg or None)
    except Exception:
        log.exception("binance listener on_dag_run_failed failed")


class BinanceObservabilityPlugin(AirflowPlugin):
    """Registers this module's hooks as an Airflow listener."""

    name = "binance_observability"
    listeners = [sys.modules[__name__]]
