"""Metrics pushed into Prometheus through its remote-write receiver (``--web.enable-remote-write-receiver``).

Why push, not a scraped ``/metrics``: most of this project's metrics are recorded by processes that live for
seconds: KubernetesPodOperator pods, and the task processes Airflow forks for every task (where the listener's
task hooks and the failure callbacks run). Nothing can scrape them before they exit. So every process pushes its
own series, labelled ``job`` (service name) and ``instance`` (``service.instance.id``, one per process), every
``OTEL_METRIC_EXPORT_INTERVAL`` and once more when it flushes or stops. docs/MONITORING.md has the reasoning.

- Names and values are translated by ``opentelemetry-exporter-prometheus`` (the reader behind a ``/metrics``
  endpoint), so they are exactly what that exporter would expose.
- A counter or histogram series is first sent with a 0 sample at the previous push (the moment it was still 0)
  before its value: without it Prometheus's ``increase()`` and ``rate()`` see a short-lived process's only sample
  as the start of the series and count nothing.
- A forked child never pushes the series it inherited (its parent does); it gets a reader of its own
  (``telemetry._after_fork_in_child``).
- A push that fails is logged at debug level and dropped: the next push carries the cumulative values again.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable
from typing import Any

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from prometheus_client import CollectorRegistry

log = logging.getLogger("binance_extractor.telemetry")

RESOURCE_LABELS = {"service_name": "job", "service_instance_id": "instance"}  # OTel -> Prometheus compatibility
_CUMULATIVE = ("counter", "histogram")
_message_class: Any = None


def write_request_class() -> Any:
    """Prometheus remote-write 1.0 ``WriteRequest`` (prompb), built from its descriptor on first use.

    Four small messages; building them here avoids a generated module and a protobuf version pin of its own.
    A private descriptor pool keeps the ``prometheus`` package name out of the process's default pool.
    """
    global _message_class
    if _message_class is None:
        from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

        f = descriptor_pb2.FieldDescriptorProto
        file = descriptor_pb2.FileDescriptorProto(name="binance_prompb.proto", package="prometheus", syntax="proto3")

        def message(name: str, *fields: tuple[str, int, int, str | None, bool]) -> None:
            msg = file.message_type.add(name=name)
            for field_name, number, kind, type_name, repeated in fields:
                field = msg.field.add(name=field_name, number=number, type=kind)
                field.label = f.LABEL_REPEATED if repeated else f.LABEL_OPTIONAL
                if type_name:
                    field.type_name = type_name

        message("Label", ("name", 1, f.TYPE_STRING, None, False), ("value", 2, f.TYPE_STRING, None, False))
        message("Sample", ("value", 1, f.TYPE_DOUBLE, None, False), ("timestamp", 2, f.TYPE_INT64, None, False))
        message(
            "TimeSeries",
            ("labels", 1, f.TYPE_MESSAGE, ".prometheus.Label", True),
            ("samples", 2, f.TYPE_MESSAGE, ".prometheus.Sample", True),
        )
        message("WriteRequest", ("timeseries", 1, f.TYPE_MESSAGE, ".prometheus.TimeSeries", True))
        pool = descriptor_pool.DescriptorPool()
        pool.Add(file)
        _message_class = message_factory.GetMessageClass(pool.FindMessageTypeByName("prometheus.WriteRequest"))
    return _message_class


def encode(series: Iterable[tuple[dict[str, str], list[tuple[float, int]]]]) -> bytes:
    """(labels with ``__name__``, [(value, epoch ms)]) -> a snappy-compressed ``WriteRequest`` body."""
    import cramjam

    request = write_request_class()()
    for labels, samples in series:
        ts = request.timeseries.add()
        for name in sorted(labels):  # Prometheus wants labels sorted by name
            ts.labels.add(name=name, value=labels[name])
        for value, stamp in samples:
            ts.samples.add(value=value, timestamp=stamp)
    return bytes(cramjam.snappy.compress_raw(request.SerializeToString()))


class RemoteWriteReader(PrometheusMetricReader):
    """A metric reader that pushes what a ``/metrics`` endpoint would show, on a timer and on flush/shutdown."""

    def __init__(self, url: str, interval_s: float = 60.0, timeout_s: float = 5.0) -> None:
        self._prometheus = CollectorRegistry(auto_describe=False)
        super().__init__(
            disable_target_info=True,
            scope_info_enabled=False,
            resource_attribute_filter=lambda key: key in ("service.name", "service.instance.id"),
            registry=self._prometheus,
        )
        self.url = url
        self._timeout_s = timeout_s
        self._pid = os.getpid()
        self._push_lock = threading.Lock()
        self._seen: set[tuple[tuple[str, str], ...]] = set()
        # Sample times are the real wall clock, never binance_extractor.clock: Prometheus refuses samples far
        # from its own now, and tests pin the library's clock to other dates.
        self._last_ms = int(time.time() * 1000)
        self._stopped = threading.Event()
        self._interval_s = max(0.05, interval_s)
        self._thread = threading.Thread(target=self._loop, name="prometheus-remote-write", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stopped.wait(self._interval_s):
            self.push()

    def series(self) -> list[tuple[dict[str, str], list[tuple[float, int]]]]:
        """Every sample now, as remote-write series (collects the SDK; marks nothing as sent)."""
        now = max(int(time.time() * 1000), self._last_ms + 1)
        out = []
        for family in self._prometheus.collect():
            for sample in family.samples:
                if sample.name.endswith("_created"):
                    continue
                # An empty value is no label at all to Prometheus; the exporter pads every point of a metric to
                # the union of its attribute names, so a new attribute elsewhere must not make a series look new.
                labels = {RESOURCE_LABELS.get(k, k): v for k, v in sample.labels.items() if v != ""}
                labels["__name__"] = sample.name
                key = tuple(sorted(labels.items()))
                points = [(float(sample.value), now)]
                if family.type in _CUMULATIVE and key not in self._seen:
                    points.insert(0, (0.0, self._last_ms))
                out.append((labels, points))
        return out

    def push(self, timeout_s: float | None = None) -> bool:
        """Send every series once; False if the receiver could not take them (nothing is retried)."""
        if os.getpid() != self._pid:
            return True  # inherited through fork: the parent pushes these series
        import requests

        with self._push_lock:
            batch = self.series()
            if not batch:
                return True
            now = batch[0][1][-1][1]
            try:
                response = requests.post(
                    self.url,
                    data=encode(batch),
                    headers={
                        "Content-Encoding": "snappy",
                        "Content-Type": "application/x-protobuf",
                        "X-Prometheus-Remote-Write-Version": "0.1.0",
                        "User-Agent": "binance-extractor",
                    },
                    timeout=timeout_s or self._timeout_s,
                )
                if response.status_code == 400:  # refused for good (Prometheus rolled the whole request back):
                    log.debug("prometheus remote write refused: %s", response.text[:300])
                    self._mark_sent(batch, now)  # never resend its 0 samples; the next push carries the values
                    return False
                response.raise_for_status()
            except Exception as exc:  # exporting must never fail the work
                log.debug("prometheus remote write to %s failed: %s", self.url, exc)
                return False
            self._mark_sent(batch, now)
            return True

    def _mark_sent(self, batch: list[tuple[dict[str, str], list[tuple[float, int]]]], now: int) -> None:
        self._seen.update(tuple(sorted(labels.items())) for labels, _ in batch)
        self._last_ms = now

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self.push(timeout_millis / 1000)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._stopped.set()
        self.push(min(self._timeout_s, timeout_millis / 1000))
        super().shutdown(timeout_millis=timeout_millis, **kwargs)
