"""OpenTelemetry instruments shared by the client, the pipeline and the sinks.

Uses only the OpenTelemetry API here: with no SDK configured every call is a cheap no-op, so importing
or running the library never needs a collector. ``setup()`` (issue: observability) installs the SDK.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import metrics, trace

NAME = "binance_extractor"


def tracer() -> trace.Tracer:
    return trace.get_tracer(NAME)


def meter() -> metrics.Meter:
    return metrics.get_meter(NAME)


@contextmanager
def span(name: str, **attributes: Any) -> Iterator[trace.Span]:
    """A span with attributes (None values dropped); exceptions are recorded and re-raised."""
    attrs = {k: v for k, v in attributes.items() if v is not None}
    with tracer().start_as_current_span(name, attributes=attrs) as current:
        yield current


class _Instruments:
    """Lazily created instruments, so a later ``setup()`` still takes effect."""

    def __init__(self) -> None:
        self._cache: dict[str, Any] = {}

    def _get(self, key: str, factory: str, **kwargs: Any) -> Any:
        if key not in self._cache:
            self._cache[key] = getattr(meter(), factory)(key, **kwargs)
        return self._cache[key]

    def counter(self, name: str, unit: str = "1", description: str = "") -> Any:
        return self._get(name, "create_counter", unit=unit, description=description)

    def histogram(self, name: str, unit: str = "s", description: str = "") -> Any:
        return self._get(name, "create_histogram", unit=unit, description=description)

    def gauge(self, name: str, unit: str = "1", description: str = "") -> Any:
        return self._get(name, "create_gauge", unit=unit, description=description)

    def reset(self) -> None:
        self._cache.clear()


instruments = _Instruments()
