"""OpenTelemetry spans and metrics shared by the client, the pipeline, the sinks, the CLI and the Airflow plugin.

Library code only uses the OpenTelemetry API through ``span()`` and ``instruments``: with no SDK installed every
call is a cheap no-op, so importing or running the library never needs a collector. ``setup()`` installs the SDK
from the standard ``OTEL_*`` environment (OTLP over HTTP when an endpoint is set, nothing exported otherwise).
Exporting runs in the SDK's background processors, which log and drop on failure: a collector that is down never
fails a task. ``capture()`` swaps in in-memory exporters for tests.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from binance_extractor import __version__

NAME = "binance_extractor"
DEFAULT_SERVICE_NAME = "binance-extractor"
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
FLUSH_TIMEOUT_MS = 5000

log = logging.getLogger(__name__)
_propagator = TraceContextTextMapPropagator()


@dataclass
class _State:
    tracer_provider: Any = None  # None -> the global provider (API no-op until an SDK is installed)
    meter_provider: Any = None
    configured: bool = False
    generation: int = 0
    owned: list[Any] = field(default_factory=list)  # providers setup() created, stopped by shutdown()
    atexit_registered: bool = False
    service_name: str = DEFAULT_SERVICE_NAME
    fresh_meter_after_fork: bool = False


_state = _State()
_lock = threading.RLock()


def tracer() -> trace.Tracer:
    provider = _state.tracer_provider or trace.get_tracer_provider()
    return provider.get_tracer(NAME, __version__)


def meter() -> metrics.Meter:
    if _state.fresh_meter_after_fork:
        _fresh_meter_provider()
    provider = _state.meter_provider or metrics.get_meter_provider()
    return provider.get_meter(NAME, __version__)


@contextmanager
def span(name: str, **attributes: Any) -> Iterator[trace.Span]:
    """A span with attributes (None values dropped); exceptions are recorded and re-raised."""
    attrs = {k: v for k, v in attributes.items() if v is not None}
    with tracer().start_as_current_span(name, attributes=attrs) as current:
        yield current


class _Lazy:
    """An instrument handle that resolves the live instrument on every call.

    Safe to keep at module level: ``setup()`` and ``capture()`` swap providers later without leaving stale
    instruments behind.
    """

    def __init__(self, owner: _Instruments, factory: str, name: str, unit: str, description: str) -> None:
        self._owner, self._factory, self.name = owner, factory, name
        self._unit, self._description = unit, description

    def _real(self) -> Any:
        return self._owner._get(self.name, self._factory, unit=self._unit, description=self._description)

    def add(self, amount: int | float, attributes: Mapping[str, Any] | None = None) -> None:
        self._real().add(amount, attributes=_clean(attributes))

    def record(self, amount: int | float, attributes: Mapping[str, Any] | None = None) -> None:
        self._real().record(amount, attributes=_clean(attributes))

    def set(self, amount: int | float, attributes: Mapping[str, Any] | None = None) -> None:
        self._real().set(amount, attributes=_clean(attributes))


def _clean(attributes: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Drop None values and stringify what OpenTelemetry would reject (enums, Decimals)."""
    if not attributes:
        return None
    out: dict[str, Any] = {}
    for key, value in attributes.items():
        if value is None:
            continue
        out[key] = value if isinstance(value, str | bool | int | float) else str(value)
    return out


class _Instruments:
    """Lazily created instruments, so a later ``setup()`` (or ``capture()``) still takes effect."""

    def __init__(self) -> None:
        self._cache: dict[str, Any] = {}
        self._generation = -1

    def _get(self, key: str, factory: str, **kwargs: Any) -> Any:
        with _lock:
            if self._generation != _state.generation:
                self._cache.clear()
                self._generation = _state.generation
            if key not in self._cache:
                self._cache[key] = getattr(meter(), factory)(key, **kwargs)
            return self._cache[key]

    def counter(self, name: str, unit: str = "1", description: str = "") -> Any:
        return _Lazy(self, "create_counter", name, unit, description)

    def histogram(self, name: str, unit: str = "s", description: str = "") -> Any:
        return _Lazy(self, "create_histogram", name, unit, description)

    def gauge(self, name: str, unit: str = "1", description: str = "") -> Any:
        return _Lazy(self, "create_gauge", name, unit, description)

    def reset(self) -> None:
        with _lock:
            self._cache.clear()


instruments = _Instruments()


# --------------------------------------------------------------------------- SDK setup


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


def _span_processors() -> list[Any]:
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    processors: list[Any] = []
    names = _exporter_names("traces")
    if "otlp" in names and _endpoint_set("TRACES"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        processors.append(BatchSpanProcessor(OTLPSpanExporter()))
    if "console" in names:
        processors.append(BatchSpanProcessor(ConsoleSpanExporter(out=sys.stderr)))
    return processors


def _metric_readers() -> list[Any]:
    from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader

    readers: list[Any] = []
    names = _exporter_names("metrics")
    if "otlp" in names and _endpoint_set("METRICS"):
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
    if "console" in names:
        readers.append(PeriodicExportingMetricReader(ConsoleMetricExporter(out=sys.stderr)))
    return readers


def _activate(tracer_provider: Any, meter_provider: Any) -> None:
    with _lock:
        _state.tracer_provider = tracer_provider
        _state.meter_provider = meter_provider
        _state.generation += 1


def setup(service_name: str = DEFAULT_SERVICE_NAME) -> bool:
    """Install the SDK once per process from the ``OTEL_*`` environment; later calls do nothing.

    Returns True if this call installed it. Spans always get real ids (log lines carry them); data leaves the
    process only through OTLP/HTTP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or the per-signal variant) is set, or
    to stderr with ``OTEL_TRACES_EXPORTER=console``. ``OTEL_SDK_DISABLED=true`` turns all of it off.
    If another SDK provider is already global (Airflow's own OTel), it is reused rather than replaced.
    """
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider

    with _lock:
        if _state.configured:
            return False
        _state.configured = True
        if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
            return False
        if os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf") not in ("http/protobuf", ""):
            log.warning(
                "OTEL_EXPORTER_OTLP_PROTOCOL=%s ignored: exporting OTLP over HTTP (protobuf)",
                os.environ["OTEL_EXPORTER_OTLP_PROTOCOL"],
            )
        _state.service_name = service_name
        res = resource(service_name)
        current_tp = trace.get_tracer_provider()
        if isinstance(current_tp, TracerProvider) and id(current_tp) not in _created:
            tp = current_tp  # someone else's SDK (Airflow's own OTel): export through it
        else:
            tp = TracerProvider(resource=res, sampler=_sampler(), shutdown_on_exit=False)
            for processor in _span_processors():
                tp.add_span_processor(processor)
            _own(tp)
            if not isinstance(current_tp, TracerProvider):
                trace.set_tracer_provider(tp)  # possible once per process; later setups stay module-level
        current_mp = metrics.get_meter_provider()
        if isinstance(current_mp, MeterProvider) and id(current_mp) not in _created:
            mp = current_mp
        else:
            mp = MeterProvider(resource=res, metric_readers=_metric_readers(), views=_views(), shutdown_on_exit=False)
            _own(mp)
            if not isinstance(current_mp, MeterProvider):
                metrics.set_meter_provider(mp)
        _activate(tp, mp)
        if _state.owned and not _state.atexit_registered:
            atexit.register(shutdown)  # bounded, unlike the SDK's own exit hooks
            _state.atexit_registered = True
        return True


_created: set[int] = set()


def _own(provider: Any) -> None:
    _state.owned.append(provider)
    _created.add(id(provider))


class _DropMetrics:
    """Exporter stand-in for the metric readers a forked child inherits: the parent exports those series."""

    def export(self, *args: Any, **kwargs: Any) -> Any:
        from opentelemetry.sdk.metrics.export import MetricExportResult

        return MetricExportResult.SUCCESS

    def force_flush(self, *args: Any, **kwargs: Any) -> bool:
        return True

    def shutdown(self, *args: Any, **kwargs: Any) -> None:
        return None


def _after_fork_in_child() -> None:
    """A forked child (Airflow executor worker, task process) must not re-export the parent's cumulative metrics.

    The SDK restarts the inherited periodic reader in the child, which would send the parent's counts again under
    the parent's identity. Its exporter is swapped for a no-op and it is stopped; the child gets a fresh meter
    provider (own ``service.instance.id``) on first use. Spans need no such care and keep the inherited provider.
    """
    global _lock
    _lock = threading.RLock()  # another thread may have held it at fork time
    inherited = [p for p in _state.owned if p is _state.meter_provider]
    if not inherited:
        return
    for provider in inherited:
        try:
            for reader in provider._sdk_config.metric_readers:
                if hasattr(reader, "_exporter"):
                    reader._exporter = _DropMetrics()
                event = getattr(reader, "_shutdown_event", None)
                if event is not None:
                    event.set()
        except Exception:  # SDK internals changed: worst case the child re-exports the parent's series
            pass
    _state.owned = [p for p in _state.owned if p not in inherited]
    _state.fresh_meter_after_fork = True
    _state.generation += 1  # drop cached instruments of the parent's provider


def _fresh_meter_provider() -> None:
    from opentelemetry.sdk.metrics import MeterProvider

    with _lock:
        if not _state.fresh_meter_after_fork:
            return
        _state.fresh_meter_after_fork = False
        mp = MeterProvider(
            resource=resource(_state.service_name),
            metric_readers=_metric_readers(),
            views=_views(),
            shutdown_on_exit=False,
        )
        _own(mp)
        _activate(_state.tracer_provider, mp)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


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


def force_flush(timeout_millis: int = FLUSH_TIMEOUT_MS) -> bool:
    """Push buffered spans and metrics now (short-lived processes, callbacks). Never raises, never waits longer
    than ``timeout_millis``; False if something could not be delivered in time."""
    return _bounded("force_flush", timeout_millis, [_state.tracer_provider, _state.meter_provider])


def shutdown(timeout_millis: int = FLUSH_TIMEOUT_MS) -> None:
    """Export what is left and stop the providers ``setup()`` created (CLI exit; also run at interpreter exit).

    Never raises; bounded by ``timeout_millis`` in total. Shutting a provider down exports what it still holds,
    so there is no separate flush (it would send cumulative metrics twice). Idempotent.
    """
    with _lock:
        owned, _state.owned = _state.owned, []
        if any(p is _state.tracer_provider or p is _state.meter_provider for p in owned):
            # Spans and metrics after this are no-ops (ids still propagate) until setup() installs fresh providers:
            # a process that goes on (tests, in-process runs of the CLI) keeps working.
            _activate(trace.NoOpTracerProvider(), metrics.NoOpMeterProvider())
            _state.configured = False
    if owned:
        _bounded("shutdown", timeout_millis, owned)


# --------------------------------------------------------------------------- trace context propagation


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


# --------------------------------------------------------------------------- in-memory capture (tests)


class Capture:
    """Spans and metric points recorded inside ``capture()``."""

    def __init__(self, span_exporter: Any, metric_reader: Any) -> None:
        self.span_exporter = span_exporter
        self.metric_reader = metric_reader

    def spans(self, name: str | None = None) -> list[Any]:
        finished = list(self.span_exporter.get_finished_spans())
        return [s for s in finished if name is None or s.name == name]

    def points(self, metric: str) -> list[Any]:
        """All data points of one metric (cumulative since ``capture()`` began)."""
        data = self.metric_reader.get_metrics_data()
        found: list[Any] = []
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.name == metric:
                        found.extend(m.data.data_points)
        return found

    def value(self, metric: str, **attrs: Any) -> float:
        """Sum (counters, gauges) or sum of recorded values (histograms) over points matching ``attrs``."""
        total = 0.0
        for point in self.points(metric):
            if all(point.attributes.get(k) == v for k, v in attrs.items()):
                total += point.sum if hasattr(point, "bucket_counts") else point.value
        return total

    def count(self, metric: str, **attrs: Any) -> int:
        """Number of recorded values of a histogram over points matching ``attrs``."""
        return sum(
            point.count for point in self.points(metric) if all(point.attributes.get(k) == v for k, v in attrs.items())
        )


@contextmanager
def capture(service_name: str = DEFAULT_SERVICE_NAME) -> Iterator[Capture]:
    """Record this library's spans and metrics in memory (tests); restores the previous providers on exit."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    reader = InMemoryMetricReader()
    res = resource(service_name)
    tp = TracerProvider(resource=res, sampler=_sampler())
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    mp = MeterProvider(resource=res, metric_readers=[reader], views=_views())
    with _lock:
        previous = (_state.tracer_provider, _state.meter_provider, _state.configured)
        _activate(tp, mp)
        _state.configured = True
    try:
        yield Capture(exporter, reader)
    finally:
        with _lock:
            stale = any(p is not None and id(p) in _created and p not in _state.owned for p in previous[:2])
            if stale:  # shut down while captured: come back as shutdown() would have left things
                _activate(trace.NoOpTracerProvider(), metrics.NoOpMeterProvider())
                _state.configured = False
            else:
                _activate(previous[0], previous[1])
                _state.configured = previous[2]
        tp.shutdown()
        mp.shutdown()
