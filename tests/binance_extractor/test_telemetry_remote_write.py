"""Metrics pushed by remote write into a real Prometheus 2.42 (``telemetry_remote_write.RemoteWriteReader``)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from binance_extractor.telemetry_remote_write import encode, write_request_class
from tests.fixtures.prometheus import Prometheus, prometheus  # noqa: F401  (fixture)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(code: str, write_url: str, **env: str) -> None:
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    child_env.update(PYTHONPATH=ROOT, BINANCE_METRICS_REMOTE_WRITE_URL=write_url, **env)
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=child_env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr


def _value(series: list[dict]) -> float:
    assert len(series) == 1, series
    return float(series[0]["value"][1])


def test_the_write_request_round_trips() -> None:
    import cramjam

    body = encode([({"__name__": "x_total", "b": "2", "a": "1"}, [(0.0, 1000), (3.0, 2000)])])
    request = write_request_class()()
    request.ParseFromString(bytes(cramjam.snappy.decompress_raw(body)))
    (ts,) = request.timeseries
    assert [(label.name, label.value) for label in ts.labels] == [("__name__", "x_total"), ("a", "1"), ("b", "2")]
    assert [(s.value, s.timestamp) for s in ts.samples] == [(0.0, 1000), (3.0, 2000)]


def test_a_short_lived_process_is_counted_whole(prometheus: Prometheus) -> None:  # noqa: F811
    """One process, one push at exit: increase() still sees its whole count (the 0 sample comes first), and the
    series carry job = the service name and instance = the process, beside the code's own job_type."""
    _run(
        """
        from binance_extractor import telemetry
        telemetry.setup()
        telemetry.instruments.counter("binance.jobs").add(3, {"job_type": "probe:5m", "outcome": "success"})
        telemetry.instruments.histogram("binance.job.duration").record(2.5, {"job_type": "probe:5m"})
        telemetry.instruments.gauge("binance.freshness.lag", unit="s").set(7, {"symbol": "BTCUSDT"})
        telemetry.shutdown()
        """,
        prometheus.write_url,
        OTEL_SERVICE_NAME="short-lived-probe",
    )
    series = prometheus.wait_for('binance_jobs_total{job_type="probe:5m"}')
    (labels,) = [s["metric"] for s in series]
    assert labels["job"] == "short-lived-probe" and labels["instance"] and labels["outcome"] == "success"
    assert _value(series) == 3
    # a single process: the 0 sample then 3 (extrapolation may stretch the increase, never hide it)
    assert _value(prometheus.query('increase(binance_jobs_total{job_type="probe:5m"}[5m])')) >= 3
    assert _value(prometheus.query('binance_job_duration_seconds_count{job_type="probe:5m"}')) == 1
    assert _value(prometheus.query('binance_freshness_lag_seconds{job="short-lived-probe"}')) == 7
    # CPU and memory of the process itself
    assert _value(prometheus.query('process_memory_usage_bytes{job="short-lived-probe"}')) > 0
    assert prometheus.query('process_cpu_time_seconds_total{job="short-lived-probe"}')


def test_a_forked_child_pushes_its_own_series_not_the_parents(prometheus: Prometheus) -> None:  # noqa: F811
    _run(
        """
        import os
        from binance_extractor import telemetry
        telemetry.setup()
        jobs = telemetry.instruments.counter("binance.jobs")
        jobs.add(1, {"job_type": "fork-parent"})
        pid = os.fork()
        if pid == 0:
            jobs.add(1, {"job_type": "fork-child"})
            telemetry.shutdown()
            os._exit(0)
        os.waitpid(pid, 0)
        telemetry.shutdown()
        """,
        prometheus.write_url,
        OTEL_SERVICE_NAME="fork-probe",
    )
    child = prometheus.wait_for('binance_jobs_total{job_type="fork-child"}')
    parent = prometheus.wait_for('binance_jobs_total{job_type="fork-parent"}')
    assert _value(child) == 1 and _value(parent) == 1  # the parent's count was pushed once, by the parent
    assert child[0]["metric"]["instance"] != parent[0]["metric"]["instance"]


def test_a_receiver_that_is_down_fails_nothing() -> None:
    from opentelemetry.sdk.metrics import MeterProvider

    from binance_extractor.telemetry_remote_write import RemoteWriteReader

    with socket_closed() as url:
        reader = RemoteWriteReader(url, interval_s=3600, timeout_s=2)
        provider = MeterProvider(metric_readers=[reader])
        provider.get_meter("probe").create_counter("binance.jobs").add(1, {"job_type": "nobody-listens"})
        assert reader.push() is False  # logged at debug level, dropped
        assert provider.force_flush(5000) is True
        provider.shutdown(5000)  # the final push fails quietly too


class socket_closed:
    """A loopback URL on which nothing listens."""

    def __enter__(self) -> str:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        return f"http://127.0.0.1:{port}/api/v1/write"

    def __exit__(self, *exc: object) -> None:
        return None


@pytest.mark.parametrize("value", ["false", "FALSE"])
def test_system_metrics_can_be_turned_off(prometheus: Prometheus, value: str) -> None:  # noqa: F811
    service = f"no-system-metrics-{value}"
    _run(
        """
        from binance_extractor import telemetry
        telemetry.setup()
        telemetry.instruments.counter("binance.jobs").add(1, {"job_type": "quiet"})
        telemetry.shutdown()
        """,
        prometheus.write_url,
        OTEL_SERVICE_NAME=service,
        BINANCE_SYSTEM_METRICS=value,
    )
    assert prometheus.wait_for(f'binance_jobs_total{{job="{service}"}}')
    assert prometheus.query(f'process_memory_usage_bytes{{job="{service}"}}') == []


def test_a_new_attribute_on_one_point_does_not_break_the_other_series(prometheus: Prometheus) -> None:  # noqa: F811
    """The translator pads every point of a metric to the union of its attribute names (``error_class=""``);
    Prometheus reads an empty label as none. Regression: the padded series looked new, got a second 0 sample
    behind its value, and Prometheus refused every later push ("duplicate sample for timestamp")."""
    _run(
        """
        from binance_extractor import telemetry
        telemetry.setup()
        jobs = telemetry.instruments.counter("binance.jobs")
        jobs.add(1, {"job_type": "padding", "outcome": "success"})
        telemetry.force_flush(5000)
        jobs.add(1, {"job_type": "padding", "outcome": "failed", "error_class": "RuntimeError"})
        jobs.add(1, {"job_type": "padding", "outcome": "success"})
        telemetry.force_flush(5000)
        telemetry.shutdown()
        """,
        prometheus.write_url,
        OTEL_SERVICE_NAME="padding-probe",
    )
    assert _value(prometheus.wait_for('binance_jobs_total{job_type="padding", outcome="failed"}')) == 1
    success = prometheus.query('binance_jobs_total{job_type="padding", outcome="success"}')
    assert _value(success) == 2 and "error_class" not in success[0]["metric"]
