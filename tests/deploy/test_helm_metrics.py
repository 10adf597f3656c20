"""The Helm values send every Airflow component's metrics where Prometheus gets them (remote write), the same
receiver the extraction pods and the tail push to."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
VALUES = yaml.safe_load((ROOT / "deploy/airflow-values.yaml").read_text())


def _extra_env() -> dict[str, str]:
    items = yaml.safe_load(VALUES["extraEnv"])  # the chart takes a (templated) YAML string
    return {item["name"]: item["value"] for item in items}


def test_scheduler_and_workers_push_to_prometheus() -> None:
    env = _extra_env()  # extraEnv goes into every Airflow container: scheduler, workers, dag-processor, api-server
    pod_template = yaml.safe_load((ROOT / "k8s_pod_templates/extractor-pod.yaml").read_text())
    pods = {e["name"]: e.get("value") for e in pod_template["spec"]["containers"][0]["env"]}
    assert env["BINANCE_METRICS_REMOTE_WRITE_URL"] == pods["BINANCE_METRICS_REMOTE_WRITE_URL"]
    assert env["BINANCE_METRICS_REMOTE_WRITE_URL"].endswith("/api/v1/write")
    assert env["OTEL_SERVICE_NAME"] == "airflow"  # Prometheus's job label of Airflow's series
    assert 1000 <= int(env["OTEL_METRIC_EXPORT_INTERVAL"]) <= 60_000
    names = {e["name"] for e in VALUES["env"]}
    assert not names & set(env), "set once, in extraEnv"


def test_the_listener_plugin_ships_in_the_airflow_image() -> None:
    """The metrics come from plugins/binance_listener.py inside the image the values run."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "COPY --chown=airflow:0 plugins/ /opt/airflow/plugins/" in dockerfile
    # and the image installs the library with its locked dependencies (the remote-write path needs them)
    lock = (ROOT / "requirements.lock").read_text()
    for package in (
        "opentelemetry-exporter-prometheus==",
        "cramjam==",
        "opentelemetry-instrumentation-system-metrics==",
    ):
        assert package in lock
