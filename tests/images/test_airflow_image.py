"""The Airflow image (the Dockerfile's default target), built and run: a consistent set of packages, the Binance
provider registered, every DAG in /opt/airflow/dags parsing, the executor the Helm values pick importable, and a
real ``airflow dags test`` (local runtime) loading from the exchange emulator into MariaDB, set up the way the
chart's set-up Job does it (``python -m binance_extractor setup-airflow``), with the checks of docs/DEPLOY.md "Deploy to
Kubernetes" step 6 (the pool, ``airflow connections test binance_default``) and the Helm values' telemetry settings:
Airflow's own metrics and the spans reach an OTLP receiver, the library's metrics a real Prometheus by remote write.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from tests.fixtures.prometheus import Prometheus, prometheus  # noqa: F401  (fixture)
from tests.images import klines, podman
from tests.images.podman import MARKS, ROOT, Images
from tests.k8s.test_pod_rendering import OtlpReceiver, otlp_receiver  # noqa: F401  (fixture)

pytestmark = MARKS

VALUES = yaml.safe_load((ROOT / "deploy" / "airflow-values.yaml").read_text())
BUILD_LOCK = (ROOT / "requirements-build.lock").read_text()

DAGBAG_PROBE = """
import json
from airflow.dag_processing.dagbag import DagBag
from airflow.providers.celery.executors.celery_executor import CeleryExecutor  # deploy/airflow-values.yaml: executor
bag = DagBag(dag_folder="/opt/airflow/dags")
print(json.dumps({"errors": bag.import_errors, "dags": sorted(bag.dag_ids)}))
"""


def _airflow(images: Images, *args: str, env: dict[str, str] | None = None, network: str = "none") -> str:
    flags = [f"--env={k}={v}" for k, v in (env or {}).items()]
    return podman.run(["run", "--rm", "--network", network, *flags, images.airflow, *args], timeout=900).stdout


def test_pip_check_is_clean_and_pip_is_the_pinned_one(images: Images) -> None:
    out = _airflow(images, "bash", "-c", "pip check && pip --version")
    assert "No broken requirements found." in out
    pinned = next(line.split("==")[1].split()[0] for line in BUILD_LOCK.splitlines() if line.startswith("pip=="))
    assert f"pip {pinned} " in out, out


def test_the_binance_provider_is_listed(images: Images) -> None:
    providers = json.loads(_airflow(images, "providers", "list", "-o", "json"))
    ours = [p for p in providers if p["package_name"] == "binance-extractor"]
    assert ours and ours[0]["version"] == "0.1.0"
    hooks = json.loads(_airflow(images, "providers", "hooks", "-o", "json"))
    assert [h["class"] for h in hooks if h.get("connection_type") == "binance"] == [
        "binance_extractor.airflow.hooks.BinanceFuturesHook"
    ]


@pytest.mark.parametrize("runtime", ["local", "kubernetes"])
def test_every_dag_in_the_image_parses(images: Images, dagbag: Any, runtime: str) -> None:
    out = _airflow(images, "python", "-c", DAGBAG_PROBE, env={"BINANCE_EXTRACTOR_RUNTIME": runtime})
    report = json.loads(out.strip().splitlines()[-1])
    assert report["errors"] == {}
    assert report["dags"] == sorted(dagbag.dag_ids) and len(report["dags"]) >= 10


def _values_env() -> dict[str, str]:
    """What the Helm values give every Airflow container: env, extraEnv and the [metrics]/[traces] config."""
    env = {e["name"]: e["value"] for e in VALUES["env"]}
    env.update({e["name"]: e["value"] for e in yaml.safe_load(VALUES["extraEnv"])})
    for section in ("metrics", "traces"):
        for key, value in VALUES["config"][section].items():
            env[f"AIRFLOW__{section.upper()}__{key.upper()}"] = value
    return env


@pytest.mark.mysql
def test_dags_test_loads_from_the_emulator_into_mariadb(
    images: Images,
    emulator: Any,
    mysql_database: str,
    otlp_receiver: OtlpReceiver,  # noqa: F811
    prometheus: Prometheus,  # noqa: F811
) -> None:
    logical_date = datetime(2024, 3, 1, 5, tzinfo=UTC)  # a fixed, long-closed past: data interval 04:00-05:00
    symbols = ["BTCUSDT", "ETHUSDT"]
    values = _values_env()
    env = {
        # The Helm values' telemetry settings; the collector and Prometheus are loopback ones, pushes every second.
        **{k: v for k, v in values.items() if k.startswith(("OTEL_", "AIRFLOW__METRICS__", "AIRFLOW__TRACES__"))},
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.url,
        "BINANCE_METRICS_REMOTE_WRITE_URL": prometheus.write_url,
        "OTEL_METRIC_EXPORT_INTERVAL": "1000",
        # The Secret's connections, pointing at the emulator and a fresh database.
        "AIRFLOW_CONN_BINANCE_DEFAULT": json.dumps({"conn_type": "binance", "host": emulator.url, "password": "k"}),
        "AIRFLOW_CONN_MYSQL_DEFAULT": f"mysql://root@127.0.0.1:3306/{mysql_database}",
        "BINANCE_ARCHIVE_BASE_URL": emulator.archive_url,
        "BINANCE_EXTRACTOR_BUDGET_NAME": f"images-{uuid.uuid4().hex[:8]}",
        "BINANCE_EXTRACTOR_SINKS": "mysql",
        "BINANCE_EXTRACTOR_RUNTIME": "local",
        "BINANCE_EXTRACTOR_HISTORY_DAYS": "1",
        # The Variable setup-airflow creates holds the config's 24 symbols; Airflow's env backend wins over it.
        "AIRFLOW_VAR_BINANCE_SYMBOLS": json.dumps(symbols),
        "AIRFLOW__CORE__PARALLELISM": "4",
    }
    assert env["AIRFLOW__METRICS__OTEL_ON"] == env["AIRFLOW__TRACES__OTEL_ON"] == "True"
    script = f"""
set -e
quiet() {{ "$@" > /tmp/out.log 2>&1 || {{ tail -80 /tmp/out.log; exit 1; }}; }}
quiet airflow db migrate
python -m binance_extractor setup-airflow
python -m binance_extractor setup-airflow
quiet airflow dags test binance_klines_h1 {logical_date.isoformat()}
echo "== runs"
airflow dags list-runs binance_klines_h1 -o json
echo "== pool"
airflow pools get binance_api -o json
"""
    out = _airflow(images, "bash", "-c", script, env=env, network="host")
    runs = _json_after(out, "== runs")
    assert [(r["state"], r["logical_date"]) for r in runs] == [("success", logical_date.isoformat())], runs
    (pool,) = _json_after(out, "== pool")
    assert pool["pool"] == "binance_api" and int(pool["slots"]) >= 1
    # docs/DEPLOY.md step 6: the exchange connection's test (ping + exchangeInfo) through the Binance hook.
    # (A process of its own: that CLI never starts the library's telemetry, so its few exchange-call metrics
    # would go through Airflow's OTLP exporter and blur the check below.)
    connection = {k: env[k] for k in ("AIRFLOW_CONN_BINANCE_DEFAULT", "BINANCE_EXTRACTOR_BUDGET_NAME")}
    tested = _airflow(images, "connections", "test", "binance_default", env=connection, network="host")
    assert "Connection success!" in tested, tested[-2000:]

    end = logical_date
    start = end - timedelta(days=1)  # BINANCE_EXTRACTOR_HISTORY_DAYS=1 back from the interval's end
    for symbol in symbols:
        served = klines.served(emulator, symbol, start, end)
        assert len(served) == 24
        assert klines.stored(mysql_database, symbol) == served, symbol

    # One telemetry configuration, three paths: Airflow's own metrics and the spans by OTLP to the collector, the
    # library's metrics (the listener's, the in-process extraction's) by remote write into Prometheus, not twice.
    otlp_metrics = _metric_names(otlp_receiver)
    assert {"airflow.dagrun.duration.success.binance_klines_h1", "airflow.ti_successes"} & otlp_metrics
    assert not {name for name in otlp_metrics if name.startswith("binance.")}
    # (The set-up Job's command; `airflow dags test` itself exits without flushing Airflow's span processor.)
    assert "cli.setup-airflow" in {span.name for _, span in otlp_receiver.spans()}
    written = prometheus.wait_for(f'binance_rows_written_total{{job="{values["OTEL_SERVICE_NAME"]}"}}')
    assert sum(float(s["value"][1]) for s in written) == 2 * 24
    assert prometheus.wait_for('binance_jobs_total{job_type="airflow.task", outcome="success"}')


def _json_after(out: str, marker: str) -> Any:
    """The JSON line a CLI printed after ``marker`` (Airflow's own log lines go to stdout too)."""
    lines = out.split(marker, 1)[1].splitlines()
    return json.loads(next(line for line in lines if line.startswith(("[", "{"))))


def _metric_names(receiver: OtlpReceiver) -> set[str]:
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

    names = set()
    for body in receiver.received["metrics"]:
        for rm in ExportMetricsServiceRequest.FromString(body).resource_metrics:
            for sm in rm.scope_metrics:
                names.update(m.name for m in sm.metrics)
    return names
