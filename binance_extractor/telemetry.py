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
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import metrics, trace

from binance_extractor.masking import mask
from binance_extractor.telemetry_capture import Capture
from binance_extractor.telemetry_exporters import (
    BATCH_BUCKETS,
    BUCKETS,
    DEFAULT_SERVICE_NAME,
    HTTP_BUCKETS,
    JOB_BUCKETS,
    K8S_ENV,
    NAME,
    _bounded,
    _DropMetrics,
    _metric_readers,
    _sampler,
    _span_processors,
    _system_metrics,
    _views,
    resource,
)
from binance_extractor.telemetry_propagation import current_ids, extract_context_from_env, inject_traceparent
from binance_extractor.version import __version__

__all__ = [
    "BATCH_BUCKETS",
    "BUCKETS",
    "DEFAULT_SERVICE_NAME",
    "FLUSH_TIMEOUT_MS",
    "HTTP_BUCKETS",
    "JOB_BUCKETS",
    "K8S_ENV",
    "NAME",
    "Capture",
    "capture",
    "current_ids",
    "extract_context_from_env",
    "force_flush",
    "inject_traceparent",
    "instruments",
    "meter",
    "resource",
    "setup",
    "shutdown",
    "span",
    "tracer",
]

FLUSH_TIMEOUT_MS = 5000

log = logging.getLogger(__name__)


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
    """A span with attributes (None values dropped); exceptions are recorded (masked) and re-raised."""
    attrs = {k: v for k, v in attributes.items() if v is not None}
    with tracer().start_as_current_span(
        name, attributes=attrs, record_exception=False, set_status_on_exception=False
    ) as current:
        try:
            yield current
        except Exception as exc:  # as OpenTelemetry's own recording: not GeneratorExit or KeyboardInterrupt
            record_error(current, exc)
            raise


def record_error(current: trace.Span, exc: BaseException) -> None:
    """The span's ``exception`` event and ERROR status, with every secret masked out of the message and the
    stack trace (a budget or database URL's password never reaches a collector)."""
    import traceback

    if not current.is_recording():
        return
    message = mask(str(exc))
    current.record_exception(
        exc,
        attributes={
            "exception.message": message,
            "exception.stacktrace": mask("".join(traceback.format_exception(exc))),
        },
    )
    current.set_status(trace.Status(trace.StatusCode.ERROR, description=f"{type(exc).__name__}: {message}"))


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
    If another SDK tracer provider is already global (Airflow's own OTel), spans go through it; metrics always
    keep a provider of their own (its readers, remote write above all, cannot be added to Airflow's).
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
        # Metrics always get a provider of their own, even beside Airflow's (its `[metrics] otel_on`): a
        # MeterProvider's readers are fixed when it is made, so reusing Airflow's would send the library's metrics
        # through Airflow's OTLP exporter only, never by remote write.
        current_mp = metrics.get_meter_provider()
        readers = _metric_readers()
        mp = MeterProvider(resource=res, metric_readers=readers, views=_views(), shutdown_on_exit=False)
        _own(mp)
        if readers:
            _system_metrics(mp)
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

# --------------------------------------------------------------------------- in-memory capture (tests)


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
