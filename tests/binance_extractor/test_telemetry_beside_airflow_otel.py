"""The library's metrics still reach Prometheus when Airflow's own OTel metrics are on in the same process.

deploy/airflow-values.yaml turns on Airflow's ``[metrics] otel_on`` (its scheduler, executor and pool metrics over
OTLP). In every Airflow process Airflow's ``Stats`` then installs the global MeterProvider before the library's
telemetry starts, and the library used to reuse it: its metrics left through Airflow's OTLP exporter only, never by
remote write, so the dashboard's panels fed by the listener and the callbacks stayed empty.
"""

from __future__ import annotations

from tests.binance_extractor.test_telemetry_remote_write import _run, _value
from tests.fixtures.prometheus import Prometheus, prometheus  # noqa: F401  (fixture)
from tests.k8s.test_pod_rendering import OtlpReceiver


def test_library_metrics_are_pushed_while_airflow_exports_its_own(prometheus: Prometheus) -> None:  # noqa: F811
    receiver = OtlpReceiver()  # Airflow's own metrics go here, as to the cluster's collector
    try:
        _run(
            """
            from airflow.stats import Stats
            from opentelemetry import metrics
            from opentelemetry.sdk.metrics import MeterProvider

            Stats.incr("binance_probe")  # Airflow's metrics logger starts first, as in the scheduler
            assert isinstance(metrics.get_meter_provider(), MeterProvider)

            from binance_extractor import telemetry

            telemetry.setup()
            telemetry.instruments.counter("binance.jobs").add(2, {"job_type": "beside-airflow", "outcome": "success"})
            telemetry.shutdown()
            """,
            prometheus.write_url,
            AIRFLOW__METRICS__OTEL_ON="True",
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url,
            OTEL_METRICS_EXPORTER="none",  # as the values set it: the library's metrics by remote write only
            OTEL_SERVICE_NAME="beside-airflow",
        )
        series = prometheus.wait_for('binance_jobs_total{job_type="beside-airflow"}')
        assert _value(series) == 2
        assert series[0]["metric"]["job"] == "beside-airflow"
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()
