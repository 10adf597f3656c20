"""Airflow operators of the project (imported only by the kubernetes runtime: KPO costs ~0.6 s to import)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from kubernetes.client import models as k8s
from opentelemetry.propagate import inject

TRACE_ENV = {"traceparent": "TRACEPARENT", "tracestate": "TRACESTATE"}


def trace_env() -> dict[str, str]:
    """W3C trace context of the current span as env vars (empty when no span is recording)."""
    carrier: dict[str, str] = {}
    inject(carrier)
    return {TRACE_ENV[k]: v for k, v in carrier.items() if k in TRACE_ENV}


class TracedKubernetesPodOperator(KubernetesPodOperator):
    """KubernetesPodOperator whose pod joins the task's trace: TRACEPARENT is set from the current context.

    Injected at execute time, because the span only exists while the task runs (never at parse time).
    ``map_label`` (the UI's map index) and ``spec`` (the typed job spec's fields, read by the failure callbacks) come
    with ``arguments`` from the planned ``jobspecs.task_kwargs``, so nothing parses the arguments back.
    """

    def __init__(self, *, map_label: str = "", spec: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.map_label = map_label
        self.spec = dict(spec or {})

    def add_trace_env(self) -> dict[str, str]:
        """Replace any previous TRACEPARENT/TRACESTATE in ``env_vars`` with the current context's."""
        values = trace_env()
        current = [e for e in (self.env_vars or []) if getattr(e, "name", None) not in TRACE_ENV.values()]
        if isinstance(self.env_vars, dict):  # not yet converted (before __init__ finished templating)
            current = [k8s.V1EnvVar(name=k, value=v) for k, v in self.env_vars.items() if k not in TRACE_ENV.values()]
        self.env_vars = current + [k8s.V1EnvVar(name=k, value=v) for k, v in values.items()]
        return values

    def execute(self, context: Any) -> Any:
        self.add_trace_env()
        return super().execute(context)
