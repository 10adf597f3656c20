"""W3C trace context across process boundaries: Airflow task -> pod environment (``TRACEPARENT``) -> spans.

Why apart: it only reads and writes the current OpenTelemetry context, never the providers ``telemetry`` manages.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

log = logging.getLogger("binance_extractor.telemetry")
_propagator = TraceContextTextMapPropagator()


def extract_context_from_env(environ: Mapping[str, str] | None = None) -> object | None:
    """Make ``TRACEPARENT``/``TRACESTATE`` from the environment the current parent context.

    A pod started by an Airflow task gets them in its env, so its spans join the task's trace. Returns the
    token for ``opentelemetry.context.detach`` or None when there is no valid parent.
    """
    env = os.environ if environ is None else environ
    traceparent = env.get("TRACEPARENT") or env.get("traceparent")
    if not traceparent:
        return None
    carrier = {"traceparent": traceparent.strip()}
    tracestate = env.get("TRACESTATE") or env.get("tracestate")
    if tracestate:
        carrier["tracestate"] = tracestate.strip()
    ctx = _propagator.extract(carrier)
    if not trace.get_current_span(ctx).get_span_context().is_valid:
        log.warning("ignoring invalid TRACEPARENT")
        return None
    return otel_context.attach(ctx)


def inject_traceparent() -> dict[str, str]:
    """``{"TRACEPARENT": ..., ["TRACESTATE": ...]}`` for the current span, to put into a child's environment.

    Empty when there is no valid current span. Call it at run time (inside the task), not at DAG parse time.
    """
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return {key.upper(): value for key, value in carrier.items()}


def current_ids() -> tuple[str, str] | None:
    """(trace_id, span_id) of the current span as hex, or None: used by the JSON log formatter."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return trace.format_trace_id(ctx.trace_id), trace.format_span_id(ctx.span_id)
