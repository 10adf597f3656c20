"""Alerting hooks for the DAGs: failure callbacks and a freshness deadline per klines DAG (Airflow-bound).

Each callback emits one metric and exactly one structured log event, then flushes telemetry: Airflow runs
callbacks in short-lived processes (task runner, DAG-processor callback runner, triggerer), and a metric that is
still buffered when the process exits is lost. Nothing here may raise into Airflow: an alerting failure is logged.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from binance_extractor import telemetry
from binance_extractor.masking import mask
from binance_extractor.symbols import is_symbol

log = logging.getLogger("binance_extractor.alerts")
FLUSH_TIMEOUT_MS = 2000


def _get(obj: Any, name: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _error_class(error: Any) -> str | None:
    if error is None:
        return None
    if isinstance(error, BaseException):
        return type(error).__name__
    text = str(error)
    match = re.match(r"^([A-Za-z_][\w.]*(?:Error|Exception|Timeout|Interrupt))\b", text)
    return match.group(1).rsplit(".", 1)[-1] if match else "str"


def _spec_symbol(spec: Any) -> str | None:
    """The ``symbol`` field of a planned job spec (``jobspecs``), all of a chunk's; fill specs have none."""
    if not isinstance(spec, Mapping):
        return None
    many = spec.get("symbols")
    if isinstance(many, list | tuple) and len(many) > 1:
        return ",".join(str(s) for s in many)
    found = spec.get("symbol")
    return str(found) if found else None


def symbol_of(context: Mapping[str, Any]) -> str | None:
    """The symbol(s) a task worked on: params, the rendered map index, python kwargs or the task's job spec."""
    params = context.get("params") or {}
    for key in ("symbol", "symbols"):
        if isinstance(params, Mapping) and params.get(key) and isinstance(params.get(key), str):
            return str(params[key])
    ti = context.get("ti") or context.get("task_instance")
    rendered = _get(ti, "rendered_map_index")
    if is_symbol(rendered):
        return rendered
    task = context.get("task")
    kwargs = _get(task, "op_kwargs")
    if isinstance(kwargs, Mapping):
        for key in ("symbol", "symbols"):
            if kwargs.get(key):
                found = kwargs[key]
                return ",".join(found) if isinstance(found, list | tuple) else str(found)
        if kwargs.get("spec"):
            return _spec_symbol(kwargs["spec"])
    return _spec_symbol(_get(task, "spec"))


def _emit(kind: str, outcome: str, message: str, fields: dict[str, Any]) -> dict[str, Any]:
    """One metric increment, one log event, one flush. Returns the event's fields (tests, callers)."""
    telemetry.setup()
    fields = {k: v for k, v in fields.items() if v is not None}
    metric_attrs = {k: fields.get(k) for k in ("dag_id", "task_id", "error_class", "timeframe")}
    telemetry.instruments.counter("binance.jobs").add(1, {"job_type": kind, "outcome": outcome, **metric_attrs})
    telemetry.instruments.counter("binance.alerts").add(1, {"kind": kind, **metric_attrs})
    summary = " ".join(f"{k}={v}" for k, v in fields.items())
    log.error("%s: %s", message, summary, extra={"event": f"binance.{kind}", **fields})
    telemetry.force_flush(FLUSH_TIMEOUT_MS)
    return fields


def _map_index(ti: Any) -> int | None:
    """The map index of a mapped task instance; None when unmapped (Airflow's -1) or unknown."""
    index = _get(ti, "map_index")
    return index if index is not None and index >= 0 else None


def _report_failure(
    kind: str, message: str, context: Mapping[str, Any], fields: Callable[[Any, Any], dict[str, Any]]
) -> None:
    """What both failure callbacks do: ``fields(ti, dag_run)`` emitted once; nothing raises into Airflow."""
    try:
        ti = context.get("ti") or context.get("task_instance")
        _emit(kind, "failure", message, fields(ti, context.get("dag_run")))
    except Exception:  # alerting must never turn into a second failure
        log.exception("binance on_%s callback failed", kind)


def on_task_failure(context: Mapping[str, Any]) -> None:
    """``on_failure_callback`` for tasks: names the DAG, task, map index, symbol and error class."""

    def fields(ti: Any, dag_run: Any) -> dict[str, Any]:
        return {
            "dag_id": _get(ti, "dag_id") or _get(context.get("dag"), "dag_id"),
            "task_id": _get(ti, "task_id"),
            "run_id": _get(ti, "run_id") or _get(dag_run, "run_id") or context.get("run_id"),
            "map_index": _map_index(ti),
            "try_number": _get(ti, "try_number"),
            "symbol": symbol_of(context),
            "error_class": _error_class(context.get("exception")),
            "error": _short(context.get("exception")),
        }

    _report_failure("task_failure", "binance task failed", context, fields)


def on_dag_failure(context: Mapping[str, Any]) -> None:
    """DAG ``on_failure_callback``: names the DAG, the last task, symbol and error class (or Airflow's reason)."""

    def fields(ti: Any, dag_run: Any) -> dict[str, Any]:
        return {
            "dag_id": _get(context.get("dag"), "dag_id") or _get(dag_run, "dag_id") or _get(ti, "dag_id"),
            "task_id": _get(ti, "task_id"),
            "run_id": context.get("run_id") or _get(dag_run, "run_id"),
            "map_index": _map_index(ti),
            "symbol": symbol_of(context) if ti is not None else None,
            "error_class": _error_class(context.get("exception")) or str(context.get("reason") or "unknown"),
            "reason": context.get("reason"),
        }

    _report_failure("dag_failure", "binance DAG run failed", context, fields)


def _short(error: Any) -> str | None:
    if error is None:
        return None
    text = str(error).strip().splitlines()
    return mask(text[0])[:300] if text else None  # the alert never shows a URL's password


# --------------------------------------------------------------------------- freshness


def freshness_deadline(interval: timedelta, *, timeframe: str | None = None) -> Any:
    """An Airflow 3 ``DeadlineAlert`` for a klines DAG: a run not finished one ``interval`` after it was queued.

    A scheduled run is queued when its candle window closes, so a stalled timeframe (slow, stuck or failed run)
    is reported within one interval. The callback runs in the triggerer (``AsyncCallback``), which every executor
    supports. Successful runs prune their deadline, so nothing fires when all is well.
    """
    from airflow.sdk.definitions.callback import AsyncCallback
    from airflow.sdk.definitions.deadline import DeadlineAlert, DeadlineReference

    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=interval,
        callback=AsyncCallback(
            on_freshness_deadline,
            kwargs={"timeframe": timeframe, "interval_s": int(interval.total_seconds())},
        ),
        name=f"binance freshness {timeframe or ''}".strip(),
    )


async def on_freshness_deadline(
    timeframe: str | None = None, interval_s: int | None = None, context: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Deadline-missed callback (triggerer): one metric and one log event naming the DAG run and timeframe.

    Backfill runs are skipped: they are queued in bulk and wait for each other, so their queue time says nothing
    about the freshness of the scheduled data.
    """
    context = context or {}
    dag_run = context.get("dag_run") or {}
    deadline = context.get("deadline") or {}
    fields = {
        "dag_id": _get(dag_run, "dag_id"),
        "run_id": _get(dag_run, "dag_run_id") or _get(dag_run, "run_id"),
        "run_type": _get(dag_run, "run_type"),
        "timeframe": timeframe,
        "interval_s": interval_s,
        "data_interval_end": _get(dag_run, "data_interval_end"),
        "deadline_time": str(_get(deadline, "deadline_time") or "") or None,
        "state": _get(dag_run, "state"),
    }
    if fields["run_type"] == "backfill":
        log.info("freshness deadline passed for backfill run %s: not alerting", fields["run_id"])
        return {**fields, "skipped": True}
    return _emit("freshness_deadline", "missed", "binance freshness deadline missed", fields)
