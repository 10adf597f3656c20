"""``Capture``: what ``telemetry.capture()`` recorded in memory, read back by tests (spans, metric points).

Why apart: a reader of SDK data only; the provider swap itself stays in ``telemetry``.
"""

from __future__ import annotations

from typing import Any


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
