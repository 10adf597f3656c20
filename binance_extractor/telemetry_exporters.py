"""The OpenTelemetry SDK pieces ``telemetry.setup()`` assembles from the ``OTEL_*`` environment: resource,
sampler, histogram views, span processors, metric readers, and a bounded flush/shutdown.

Why apart: stateless configuration, separate from the process-wide provider state in ``telemetry``.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from binance_extractor.version import __version__

log = logging.getLogger("binance_extractor.telemetry")

NAME = "binance_extractor"
DEFAULT_SERVICE_NAME = "binance-extractor"
# Prometheus remote-write receiver, e.g. http://prometheus:9090/api/v1/write (telemetry_remote_write.py)
REMOTE_WRITE_ENV = "BINANCE_METRICS_REMOTE_WRITE_URL"
# Pod template (downward API) -> resource attribute.
K8S_ENV = {
    "K8S_POD_NAME": "k8s.pod.name",
    "K8S_NAMESPACE_NAME": "k8s.namespace.name",
    "K8S_NODE_NAME": "k8s.node.name",
}
# Histogram bucket boundaries in seconds (the SDK default buckets are made for milliseconds).
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
JOB_BUCKETS = (0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0)
BUCKETS = {
    "binance.http.duration": HTTP_BUCKETS,
    "binance.db.batch.duration": BATCH_BUCKETS,
    "binance.job.duration": JOB_BUCKETS,
}


def resource(service_name: str = DEFAULT_SERVICE_NAME) -> Any:
    """service.name/version + Kubernetes pod/namespace/node from the downward-API env + OTEL_RESOURCE_ATTRIBUTES.

    ``OTEL_SERVICE_NAME`` (or ``service.name`` in ``OTEL_RESOURCE_ATTRIBUTES``) overrides ``service_name``.
    """
    from opentelemetry.sdk.resources import OTELResourceDetector, Resource

    detected = OTELResourceDetector().detect().attributes
    attrs: dict[str, Any] = {
        "service.name": detected.get("service.name") or service_name,
        "service.version": detected.get("service.version") or __version__,
        # one per process: Airflow forks (scheduler -> executor workers -> task processes), and cumulative
        # series from different processes must not share an identity
        "service.instance.id": detected.get("service.instance.id") or uuid.uuid4().hex,
    }
    for env, key in K8S_ENV.items():
        value = os.environ.get(env)
        if value and key not in detected:
            attrs[key] = value
    return Resource.create(attrs)


def _views() -> list[Any]:
    from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View

    return [
        View(instrument_name=name, aggregation=ExplicitBucketHistogramAggregation(boundaries=bounds))
        for name, bounds in BUCKETS.items()
    ]


def _sampler() -> Any:
    """Honour ``OTEL_TRACES_SAMPLER``; by default also record under an unsampled remote parent.

    Airflow's DAG-run trace carrier is marked unsampled when Airflow's own tracing is off; strict parent-based
    sampling would then drop every span of the pods it starts, although they share its trace id.
    """
    if os.environ.get("OTEL_TRACES_SAMPLER"):
        return None  # TracerProvider reads the env itself
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased

    return ParentBased(root=ALWAYS_ON, remote_parent_not_sampled=ALWAYS_ON)


def _exporter_names(signal: str) -> list[str]:
    raw = os.environ.get(f"OTEL_{signal.upper()}_EXPORTER", "otlp")
    return [n.strip().lower() for n in raw.split(",") if n.strip()]


def _endpoint_set(signal: str) -> bool:
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT")
    )


def _exporters(signal: str, otlp: Callable[[], Any], console: Callable[[], Any]) -> list[Any]:
    """The exporters ``OTEL_<SIGNAL>_EXPORTER`` names, one rule for traces and metrics: OTLP only when an endpoint
    is set (nothing is exported otherwise), console to stderr. Factories, so the OTLP module is imported only
    when it is used."""
    exporters: list[Any] = []
    names = _exporter_names(signal)
    if "otlp" in names and _endpoint_set(signal.upper()):
        exporters.append(otlp())
    if "console" in names:
        exporters.append(console())
    return exporters


def _span_processors() -> list[Any]:
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    def otlp() -> Any:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()

    exporters = _exporters("traces", otlp, lambda: ConsoleSpanExporter(out=sys.stderr))
    return [BatchSpanProcessor(exporter) for exporter in exporters]


def _metric_readers() -> list[Any]:
    from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader

    def otlp() -> Any:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        return OTLPMetricExporter()

    exporters = _exporters("metrics", otlp, lambda: ConsoleMetricExporter(out=sys.stderr))
    readers: list[Any] = [PeriodicExportingMetricReader(exporter) for exporter in exporters]
    url = os.environ.get(REMOTE_WRITE_ENV, "").strip()
    if url:  # Prometheus's remote-write receiver: the production path (docs/MONITORING.md)
        from binance_extractor.telemetry_remote_write import RemoteWriteReader  # prometheus_client only if used

        readers.append(RemoteWriteReader(url, interval_s=_export_interval_s()))
    return readers


# CPU and memory of each process (opentelemetry-instrumentation-system-metrics): pods, the tail, Airflow components.
SYSTEM_METRICS: dict[str, list[str] | None] = {
    "process.cpu.time": ["user", "system"],
    "process.memory.usage": None,
    "process.memory.virtual": None,
    "process.thread.count": None,
}
SYSTEM_METRICS_ENV = "BINANCE_SYSTEM_METRICS"  # "false" turns them off


def _system_metrics(meter_provider: Any) -> None:
    """Observe this process's CPU time, resident and virtual memory and threads on ``meter_provider``.

    The instrumentor is a per-process singleton: it is re-bound when ``setup()`` installs a fresh provider.
    """
    if os.environ.get(SYSTEM_METRICS_ENV, "").strip().lower() == "false":
        return
    try:
        from opentelemetry.instrumentation.system_metrics import SystemMetricsInstrumentor

        instrumentor = SystemMetricsInstrumentor(config=SYSTEM_METRICS)
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()
        instrumentor.instrument(meter_provider=meter_provider)
    except Exception as exc:  # observability must never fail the work
        log.debug("system metrics unavailable: %s", exc)


def _export_interval_s() -> float:
    """``OTEL_METRIC_EXPORT_INTERVAL`` (milliseconds, default 60000), as the SDK's periodic reader reads it."""
    try:
        return max(0.05, float(os.environ.get("OTEL_METRIC_EXPORT_INTERVAL", "60000")) / 1000)
    except ValueError:
        return 60.0


class _DropMetrics:
    """Exporter stand-in for the metric readers a forked child inherits: the parent exports those series."""

    def export(self, *args: Any, **kwargs: Any) -> Any:
        from opentelemetry.sdk.metrics.export import MetricExportResult

        return MetricExportResult.SUCCESS

    def force_flush(self, *args: Any, **kwargs: Any) -> bool:
        return True

    def shutdown(self, *args: Any, **kwargs: Any) -> None:
        return None


def _bounded(action: str, timeout_millis: int, providers: list[Any]) -> bool:
    """Run ``provider.<action>()`` for each provider in parallel daemon threads, waiting at most the budget.

    The OTLP exporter retries a refused connection until its own timeout (10 s by default); a process that is
    done must not wait that long for a collector that is down, so whatever is still pending is abandoned.
    """
    results: dict[int, bool] = {}

    def run(index: int, provider: Any) -> None:
        try:
            method = getattr(provider, action)
            if action == "force_flush":
                results[index] = bool(method(timeout_millis=timeout_millis))
            elif isinstance(provider, _meter_provider_class()):
                method(timeout_millis=timeout_millis)
                results[index] = True
            else:
                method()
                results[index] = True
        except Exception as exc:  # exporting must never fail a task
            log.debug("telemetry %s failed: %s", action, exc)
            results[index] = False

    threads = [
        threading.Thread(target=run, args=(i, p), name=f"otel-{action}", daemon=True)
        for i, p in enumerate(providers)
        if hasattr(p, action)
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout_millis / 1000
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return len(results) == len(threads) and all(results.values())


def _meter_provider_class() -> type:
    from opentelemetry.sdk.metrics import MeterProvider

    return MeterProvider
