"""Alerting hooks for the DAGs: failure callbacks and a freshness deadline per klines DAG.

Each callback emits one metric and exactly one structured log event, then flushes telemetry: Airflow runs
callbacks in short-lived processes (task runner, DAG-processor callback runner, triggerer), and a metric that is
still buffered when the process exits is lost. Nothing here may raise into Airflow: an alerting failure is logged.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from binance_extractor import clock, telemetry

log = logging.getLogger("binance_extractor.alerts")
FLUSH_TIMEOUT_MS = 2000
_SYMBOL_RE = re.compile(r"^[A-Z0-9]{2,30}$")


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


def _symbol_from_args(args: Any) -> str | None:
    """``--symbols BTCUSDT`` / ``--symbols=BTCUSDT,ETHUSDT`` in a pod's argument list."""
    if not isinstance(args, list | tuple):
        return None
    for i, arg in enumerate(args):
        if not isinstance(arg, str):
            continue
        if arg in ("--symbols", "--symbol") and i + 1 < len(args):
            return str(args[i + 1])
        for flag in ("--symbols=", "--symbol="):
            if arg.startswith(flag):
                return arg[len(flag) :]
    return None


def symbol_of(context: Mapping[str, Any]) -> str | None:
    """The symbol(s) a task worked on: params, the rendered map index, python kwargs or pod arguments."""
    params = context.get("params") or {}
    for key in ("symbol", "symbols"):
        if isinstance(params, Mapping) and params.get(key) and isinstance(params.get(key), str):
            return str(params[key])
    ti = context.get("ti") or context.get("task_instance")
    rendered = _get(ti, "rendered_map_index")
    if isinstance(rendered, str) and _SYMBOL_RE.match(rendered):
        return rendered
    task = context.get("task")
    for attr in ("op_kwargs", "op_args"):
        value = _get(task, attr)
        if isinstance(value, Mapping):
            for key in ("symbol", "symbols"):
                if value.get(key):
                    found = value[key]
                    return ",".join(found) if isinstance(found, list | tuple) else str(found)
            found = _symbol_from_args(value.get("argv") or value.get("arguments"))
            if found:
                return found
        if isinstance(value, list | tuple):
            found = _symbol_from_args(value)
            if found:
                return found
    return _symbol_from_args(_get(task, "arguments"))


def _emit(kind: str, outcome: str, message: str, fields: dict[str, Any]) -> dict[str, Any]:
    """One metric increment, one log event, one flush. Returns the event's fields (tests, callers)."""
    telemetry.setup()
    fields = {k: v for k, v in fields.items() if v is not None}
    metric_attrs = {k: fields.get(k) for k in ("dag_id", "task_id", "error_class", "timeframe")}
    telemetry.instruments.counter("binance.jobs").add(1, {"job": kind, "outcome": outcome, **metric_attrs})
    telemetry.instruments.counter("binance.alerts").add(1, {"kind": kind, **metric_attrs})
    summary = " ".join(f"{k}={v}" for k, v in fields.items())
    log.error("%s: %s", message, summary, extra={"event": f"binance.{kind}", **fields})
    telemetry.force_flush(FLUSH_TIMEOUT_MS)
    return fields


def on_task_failure(context: Mapping[str, Any]) -> None:
    """``on_failure_callback`` for tasks: names the DAG, task, map index, symbol and error class."""
    try:
        ti = context.get("ti") or context.get("task_instance")
        dag_run = context.get("dag_run")
        map_index = _get(ti, "map_index")
        _emit(
            "task_failure",
            "failure",
            "binance task failed",
            {
                "dag_id": _get(ti, "dag_id") or _get(context.get("dag"), "dag_id"),
                "task_id": _get(ti, "task_id"),
                "run_id": _get(ti, "run_id") or _get(dag_run, "run_id") or context.get("run_id"),
                "map_index": map_index if map_index is not None and map_index >= 0 else None,
                "try_number": _get(ti, "try_number"),
                "symbol": symbol_of(context),
                "error_class": _error_class(context.get("exception")),
                "error": _short(context.get("exception")),
            },
        )
    except Exception:  # alerting must never turn into a second failure
        log.exception("binance on_task_failure callback failed")


def on_dag_failure(context: Mapping[str, Any]) -> None:
    """DAG ``on_failure_callback``: names the DAG, the last task, symbol and error class (or Airflow's reason)."""
    try:
        ti = context.get("ti") or context.get("task_instance")
        dag_run = context.get("dag_run")
        map_index = _get(ti, "map_index")
        _emit(
            "dag_failure",
            "failure",
            "binance DAG run failed",
            {
                "dag_id": _get(context.get("dag"), "dag_id") or _get(dag_run, "dag_id") or _get(ti, "dag_id"),
                "task_id": _get(ti, "task_id"),
                "run_id": context.get("run_id") or _get(dag_run, "run_id"),
                "map_index": map_index if map_index is not None and map_index >= 0 else None,
                "symbol": symbol_of(context) if ti is not None else None,
                "error_class": _error_class(context.get("exception")) or str(context.get("reason") or "unknown"),
                "reason": context.get("reason"),
            },
        )
    except Exception:
        log.exception("binance on_dag_failure callback failed")


def _short(error: Any) -> str | None:
    if error is None:
        return None
    text = str(error).strip().splitlines()
    return text[0][:300] if text else None


# --------------------------------------------------------------------------- freshness


def record_freshness(symbol: str, timeframe: str, last_open: datetime | None, *, now: datetime | None = None) -> float:
    """How far (seconds) the store is behind the newest closed candle; sets the ``binance.freshness.lag`` gauge.

    0 when the newest closed candle is stored. Returns -1 (and sets nothing) when nothing is stored yet.
    """
    from binance_extractor import timeframes
    from binance_extractor.timeutil import dt_to_ms

    if last_open is None:
        return -1.0
    tf = timeframes.parse(timeframe)
    now_ms = dt_to_ms(now or clock.now())
    forming_open_ms = tf.floor_ms(now_ms)  # the candle still open now; the one before it is the newest closed
    expected_next_ms = tf.next_open_ms(dt_to_ms(last_open))
    lag = max(0, forming_open_ms - expected_next_ms) / 1000
    labels = {"symbol": symbol, "timeframe": tf.interval}  # the exchange's "5m", like the pipeline's row metrics
    telemetry.instruments.gauge("binance.freshness.lag", unit="s").set(lag, labels)
    return lag


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
