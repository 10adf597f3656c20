"""After a short real run, every query of the Grafana dashboard returns data from a real Prometheus.

A real Prometheus 2.42 (``deploy/prometheus/prometheus.yml`` with its rule files, remote-write receiver on) takes
the metrics of three real processes pushing by remote write, the production path (docs/MONITORING.md):
the library (extraction with a 429 and an exchange-side hole, then the gap filler), the live tail (fill, forced
reconnect, candles closing) and Airflow (a ``dag.test()`` run: the listener plugin and the failure callbacks).
Then every ``expr`` of ``deploy/grafana/*.json`` must return at least one series, and the alerts those runs call
for must fire. No timing assertion: producers keep pushing until the test has read everything, and waits only
guard against a hang.
"""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.prometheus import Prometheus, prometheus  # noqa: F401  (fixture)

pytestmark = [pytest.mark.xdist_group("prometheus-end-to-end"), pytest.mark.timeout(900)]  # a hang guard

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((ROOT / "deploy/grafana").glob("*.json"))
# Grafana's variables, as Grafana would fill them for "last 15 minutes, all symbols"
VARIABLES = {"$__rate_interval": "15m", "$__range": "15m", "$__interval": "1m", "$symbol": ".*"}
SERVICES = {"library": "binance-extractor", "tail": "binance-stream", "airflow": "airflow"}
HANG_GUARD_S = 600


class Producer:
    def __init__(self, mode: str, write_url: str, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "AIRFLOW", "BINANCE_"))}
        env.update(
            PYTHONPATH=str(ROOT),
            BINANCE_METRICS_REMOTE_WRITE_URL=write_url,
            OTEL_METRIC_EXPORT_INTERVAL="1000",
            OTEL_SERVICE_NAME=SERVICES[mode],
            OTEL_TRACES_EXPORTER="none",
            BINANCE_EXTRACTOR_DATA_DIR=str(workdir / "data"),
            BINANCE_EXTRACTOR_BUDGET_NAME=f"e2e-{mode}-{os.getpid()}",
            BINANCE_EXTRACTOR_HISTORY_DAYS="1",
            BINANCE_LOG_FORMAT="text",
            AIRFLOW_CONN_SQLITE_DEFAULT="sqlite://" + urllib.parse.quote(str(workdir / "sink.sqlite"), safe=""),
            AIRFLOW_HOME=str(workdir / "airflow"),
            AIRFLOW__CORE__PLUGINS_FOLDER=str(ROOT / "plugins"),
            AIRFLOW__CORE__DAGS_FOLDER=str(workdir / "no-dags"),
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
            AIRFLOW__CORE__UNIT_TEST_MODE="True",
            AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{workdir / 'airflow.db'}",
        )
        self.mode = mode
        self.stderr = (workdir / "stderr.log").open("w+")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.deploy.prometheus_producers", mode],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.strip())
        self.lines.put("EOF")

    def log(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read()[-4000:]

    def wait_ready(self, deadline: float) -> None:
        while True:
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"{self.mode} producer never got ready:\n{self.log()}") from None
            if line == "READY":
                return
            if line == "EOF":
                raise AssertionError(f"{self.mode} producer exited ({self.proc.wait()}):\n{self.log()}")

    def finish(self) -> int:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()
        return self.proc.returncode


@pytest.fixture(scope="module")
def producers(prometheus: Prometheus, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Producer]]:  # noqa: F811
    base = tmp_path_factory.mktemp("producers")
    running = {mode: Producer(mode, prometheus.write_url, base / mode) for mode in SERVICES}
    try:
        deadline = time.monotonic() + HANG_GUARD_S
        for producer in running.values():
            producer.wait_ready(deadline)
        yield running
    finally:
        codes = {mode: p.finish() for mode, p in running.items()}
    assert codes == dict.fromkeys(SERVICES, 0), codes


def dashboard_queries() -> list[tuple[str, str, str]]:
    """(dashboard, panel title, PromQL with Grafana's variables filled) for every target of every dashboard."""
    out = []
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                expr = target["expr"]
                for name, value in VARIABLES.items():
                    expr = expr.replace(name, value)
                out.append((path.name, panel["title"], expr))
    return out


def test_every_dashboard_query_returns_data(prometheus: Prometheus, producers: dict[str, Producer]) -> None:  # noqa: F811
    queries = dashboard_queries()
    assert len(queries) >= 30
    empty = []
    for dashboard, title, expr in queries:
        assert "$" not in expr, f"unfilled Grafana variable in {expr!r}"
        if not prometheus.wait_for(expr, timeout_s=120):
            empty.append(f"{dashboard} / {title}: {expr}")
    assert not empty, "queries without data:\n" + "\n".join(empty)


def test_the_symbol_variable_lists_the_symbols(prometheus: Prometheus, producers: dict[str, Producer]) -> None:  # noqa: F811
    for path in DASHBOARDS:
        for variable in json.loads(path.read_text())["templating"]["list"]:
            match = re.fullmatch(r"label_values\((\w+), (\w+)\)", variable.get("definition", ""))
            if match:
                metric, label = match.groups()
                values = prometheus.api(f"label/{label}/values", **{"match[]": metric})
                assert "BTCUSDT" in values, (variable["name"], values)


def test_series_carry_the_service_as_job_and_the_code_s_job_type(
    prometheus: Prometheus,  # noqa: F811
    producers: dict[str, Producer],
) -> None:
    tasks = prometheus.wait_for('binance_jobs_total{job_type="airflow.task", outcome="failed"}')
    assert {s["metric"]["job"] for s in tasks} == {"airflow"}
    assert {s["metric"]["dag_id"] for s in tasks} == {"binance_monitoring_probe"}
    pipeline = prometheus.wait_for('binance_jobs_total{job_type="klines:5m"}')
    assert {s["metric"]["job"] for s in pipeline} == {"binance-extractor", "binance-stream"}  # the tail's fills
    assert prometheus.wait_for('binance_stream_fills_total{job="binance-stream"}')
    # one series per process: every producer's CPU and memory
    memory = prometheus.wait_for("process_memory_usage_bytes")
    assert {s["metric"]["job"] for s in memory} >= set(SERVICES.values())


def test_the_runs_fire_the_alerts_they_call_for(prometheus: Prometheus, producers: dict[str, Producer]) -> None:  # noqa: F811
    """A failed task and DAG run (critical) and a confirmed exchange-side hole (info), from the real rules."""
    wanted = {
        "BinanceTaskFailed": "critical",
        "BinanceDagRunFailed": "critical",
        "BinanceExchangeHolesConfirmed": "info",
    }
    deadline = time.monotonic() + 120
    while True:
        alerts = prometheus.api("alerts")["alerts"]
        firing = {a["labels"]["alertname"]: a["labels"]["severity"] for a in alerts if a["state"] == "firing"}
        if wanted.items() <= firing.items() or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert wanted.items() <= firing.items(), firing
    assert "BinanceIPBanned" not in firing  # a 429 is not a ban
