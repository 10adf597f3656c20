"""End to end with a real ``airflow standalone`` (scheduler, api-server, dag-processor, task runner processes).

A tiny DAG's task starts a child process the way a pod is started (``TRACEPARENT`` from
``telemetry.inject_traceparent()`` in its env); every process exports to a loopback OTLP receiver. Checks:
the scheduler reports the DAG run, each task runner reports its task (flushed before the process exits), the
task's ``airflow.task`` span and the child's spans share one trace id, the DAG run's.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.binance_extractor.test_telemetry import _attrs, _Receiver
from tests.fixtures.prometheus import Prometheus, prometheus  # noqa: F401  (fixture)

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("airflow-listener")]  # one Airflow, one worker

ROOT = Path(__file__).resolve().parents[2]
DAG_ID = "binance_obs_e2e"
DAG_SOURCE = f"""
import os, subprocess, sys
import pendulum
from airflow.sdk import DAG, task

CHILD = '''
from binance_extractor import telemetry
telemetry.setup()
telemetry.extract_context_from_env()
with telemetry.span("cli.klines", command="klines"):
    with telemetry.span("extract.symbol", symbol="BTCUSDT", timeframe="m5", kind="klines"):
        telemetry.instruments.counter("binance.rows.written").add(
            12, {{"kind": "klines", "symbol": "BTCUSDT", "timeframe": "m5", "sink": "sqlite"}})
telemetry.shutdown()
'''

with DAG("{DAG_ID}", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")) as dag:

    @task
    def start_pod():
        from binance_extractor import telemetry
        env = {{**os.environ, **telemetry.inject_traceparent(), "K8S_POD_NAME": "extract-btcusdt"}}
        subprocess.run([sys.executable, "-c", CHILD], env=env, check=True, timeout=120)
        return env.get("TRACEPARENT")

    @task
    def explode():
        raise RuntimeError("pod died")

    start_pod() >> explode()
"""
DEADLINE_DAG_ID = "binance_obs_deadline"
DEADLINE_DAG_SOURCE = f"""
import os, time
from datetime import timedelta
import pendulum
from airflow.sdk import DAG, task
from binance_extractor.airflow import callbacks

with DAG(
    "{DEADLINE_DAG_ID}",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    deadline=callbacks.freshness_deadline(timedelta(seconds=3), timeframe="m5"),
) as dag:

    @task
    def stalled():
        # stalled until the test has seen the alert (a fixed sleep raced a slow scheduler on a loaded machine)
        release = os.path.join(os.environ["AIRFLOW_HOME"], "release-stalled")
        started = time.monotonic()
        while not os.path.exists(release) and time.monotonic() - started < 280:
            time.sleep(0.5)

    stalled()
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _request(url: str, data: dict | None = None, token: str | None = None, method: str | None = None) -> dict:
    body = json.dumps(data).encode() if data is not None else None
    req = urllib.request.Request(url, data=body, method=method or ("POST" if body else "GET"))
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read() or b"{}")


@pytest.fixture(scope="module")
def airflow(
    tmp_path_factory: pytest.TempPathFactory,
    prometheus: Prometheus,  # noqa: F811
) -> Iterator[tuple[str, str, _Receiver, Path]]:
    home = tmp_path_factory.mktemp("obs_e2e_home")
    dags = home / "dags"
    dags.mkdir()
    (dags / f"{DAG_ID}.py").write_text(textwrap.dedent(DAG_SOURCE), encoding="utf-8")
    (dags / f"{DEADLINE_DAG_ID}.py").write_text(textwrap.dedent(DEADLINE_DAG_SOURCE), encoding="utf-8")
    port = _free_port()
    receiver = _Receiver().__enter__()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "OTEL_", "TRACE"))}
    env.update(
        PYTHONPATH=str(ROOT),
        PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(dags),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(ROOT / "plugins"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__EXECUTOR="LocalExecutor",
        AIRFLOW__CORE__PARALLELISM="2",
        AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home}/airflow.db",
        AIRFLOW__API__PORT=str(port),
        AIRFLOW__API__BASE_URL=f"http://localhost:{port}",
        AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"http://localhost:{port}/execution/",
        AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(_free_port()),
        AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT=str(_free_port()),
        AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC="1",
        AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="2",
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
        OTEL_METRIC_EXPORT_INTERVAL="1000",
        # the production path too (deploy/airflow-values.yaml): every process pushes into Prometheus
        BINANCE_METRICS_REMOTE_WRITE_URL=prometheus.write_url,
        OTEL_SERVICE_NAME="airflow",
    )
    log = (home / "standalone.log").open("w")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "airflow"), "standalone"],
        env=env,
        cwd=home,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://localhost:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                health = _request(f"{base}/api/v2/monitor/health")
                if health.get("scheduler", {}).get("status") == "healthy":
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise AssertionError("airflow standalone did not become healthy; see " + str(home / "standalone.log"))
            time.sleep(1)
        passwords = json.loads((home / "simple_auth_manager_passwords.json.generated").read_text())
        user, password = next(iter(passwords.items()))
        token = _request(f"{base}/auth/token", {"username": user, "password": password})["access_token"]
        yield base, token, receiver, home
    finally:
        _stop_group(proc)
        log.close()
        receiver.__exit__(None, None, None)


def _stop_group(proc: subprocess.Popen) -> None:
    """SIGINT, then SIGTERM, then SIGKILL to the whole process group until no member is left."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        for _ in range(30):
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.5)
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                return


def _points(receiver: _Receiver, name: str) -> list[dict]:
    out = []
    for p in receiver.metric_points(name):
        value = p.sum if hasattr(p, "bucket_counts") else (p.as_int or p.as_double)
        out.append({**_attrs(p.attributes), "_value": value})
    return out


def test_a_scheduled_run_reports_from_every_process(airflow: tuple[str, str, _Receiver, Path]) -> None:
    base, token, receiver, home = airflow
    deadline = time.monotonic() + 300
    while True:  # the dag-processor must have parsed the file first
        try:
            _request(f"{base}/api/v2/dags/{DAG_ID}", token=token)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
    run = _request(f"{base}/api/v2/dags/{DAG_ID}/dagRuns", {"logical_date": None}, token=token)
    run_id = run["dag_run_id"]
    state = "queued"
    while True:
        with contextlib.suppress(OSError):  # a busy machine: the api-server answers late
            state = _request(f"{base}/api/v2/dags/{DAG_ID}/dagRuns/{run_id}", token=token)["state"]
        if state in ("success", "failed"):
            break
        assert time.monotonic() < deadline, f"run still {state}; see {home / 'standalone.log'}"
        time.sleep(1)
    assert state == "failed"

    def dag_run_reported() -> bool:
        return any(
            p.get("job_type") == "airflow.dag_run" and p.get("outcome") == "failed" and p.get("dag_id") == DAG_ID
            for p in _points(receiver, "binance.jobs")
        )

    while not dag_run_reported():  # the scheduler exports every second (OTEL_METRIC_EXPORT_INTERVAL)
        assert time.monotonic() < deadline, "the scheduler never reported the DAG run"
        time.sleep(1)

    jobs = _points(receiver, "binance.jobs")
    assert any(p.get("task_id") == "start_pod" and p.get("outcome") == "success" for p in jobs)
    assert any(p.get("task_id") == "explode" and p.get("outcome") == "failed" for p in jobs)
    assert any(p.get("job_type") == "airflow.task" for p in _points(receiver, "binance.job.duration"))
    assert [p["_value"] for p in _points(receiver, "binance.rows.written")] == [12]

    spans = [s for _, s in receiver.spans()]
    # The task span: Airflow's own ``worker.<task_id>`` (recorded through the SDK this plugin installed in the
    # supervisor before it forked the task process) or else the plugin's ``airflow.task``.
    task_spans = {
        _attrs(s.attributes)["airflow.task_id"]: s
        for s in spans
        if s.name in ("airflow.task", f"worker.{_attrs(s.attributes).get('airflow.task_id')}")
    }
    pod_root = next(s for s in spans if s.name == "cli.klines")
    pod_child = next(s for s in spans if s.name == "extract.symbol")
    start_pod = task_spans["start_pod"]
    assert _attrs(start_pod.attributes)["airflow.dag_run.run_id"] == run_id
    assert pod_root.trace_id == start_pod.trace_id
    assert pod_root.parent_span_id == start_pod.span_id  # the pod hangs under the task that started it
    assert pod_child.parent_span_id == pod_root.span_id
    assert task_spans["explode"].trace_id == start_pod.trace_id  # one trace per DAG run
    pod_resources = [r for r, s in receiver.spans() if s.name == "cli.klines"]
    assert pod_resources[0]["k8s.pod.name"] == "extract-btcusdt"


def _trigger(base: str, token: str, dag_id: str, deadline: float) -> str:
    while True:  # the dag-processor must have parsed the file first
        try:
            return _request(f"{base}/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None}, token=token)["dag_run_id"]
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def test_a_stalled_run_misses_its_freshness_deadline(airflow: tuple[str, str, _Receiver, Path]) -> None:
    """Airflow's deadline machinery (scheduler -> triggerer) runs ``callbacks.on_freshness_deadline``."""
    base, token, receiver, home = airflow
    deadline = time.monotonic() + 300
    run_id = _trigger(base, token, DEADLINE_DAG_ID, deadline)

    def alerted() -> list[dict]:
        return [
            p
            for p in _points(receiver, "binance.alerts")
            if p.get("kind") == "freshness_deadline" and p.get("dag_id") == DEADLINE_DAG_ID
        ]

    while not alerted():
        assert time.monotonic() < deadline, f"no freshness alert for {run_id}; see {home / 'standalone.log'}"
        time.sleep(1)
    (point,) = alerted()
    (home / "release-stalled").touch()  # the task may finish now
    assert point["timeframe"] == "m5" and point["_value"] == 1
    # A missed deadline only alerts: the run goes on and succeeds (the scheduler handles a DAG with a deadline
    # fine; only dag.test() in 3.3.2 trips over one when the run succeeds).
    state = "running"
    while state not in ("success", "failed"):
        assert time.monotonic() < deadline, f"deadline run still {state}; see {home / 'standalone.log'}"
        time.sleep(1)
        with contextlib.suppress(OSError):
            state = _request(f"{base}/api/v2/dags/{DEADLINE_DAG_ID}/dagRuns/{run_id}", token=token)["state"]
    assert state == "success"


def test_the_scheduler_and_the_task_processes_push_into_prometheus(
    airflow: tuple[str, str, _Receiver, Path],
    prometheus: Prometheus,  # noqa: F811
) -> None:
    """Remote write from real Airflow processes: the scheduler (DAG-run outcome) and the task processes the
    executor forks (task outcomes, flushed before they exit), as the Helm values deploy it."""
    base, token, _receiver, home = airflow
    deadline = time.monotonic() + 300
    run_id = _trigger(base, token, DAG_ID, deadline)
    state = "queued"
    while state not in ("success", "failed"):
        assert time.monotonic() < deadline, f"run {run_id} still {state}; see {home / 'standalone.log'}"
        time.sleep(1)
        with contextlib.suppress(OSError):
            state = _request(f"{base}/api/v2/dags/{DAG_ID}/dagRuns/{run_id}", token=token)["state"]
    failed_task = prometheus.wait_for(
        f'binance_jobs_total{{job="airflow", job_type="airflow.task", dag_id="{DAG_ID}", task_id="explode", '
        'outcome="failed"}',
        timeout_s=300,
    )
    assert failed_task, f"no task outcome in Prometheus; see {home / 'standalone.log'}"
    runs = prometheus.wait_for(
        f'binance_jobs_total{{job="airflow", job_type="airflow.dag_run", dag_id="{DAG_ID}", outcome="failed"}}',
        timeout_s=300,
    )
    assert runs, "the scheduler's DAG-run outcome never reached Prometheus"
    # different processes: the scheduler's series and a task process's series have their own instance
    assert {s["metric"]["instance"] for s in runs}.isdisjoint({s["metric"]["instance"] for s in failed_task})
    assert prometheus.wait_for('increase(binance_jobs_total{job_type="airflow.task", task_id="explode"}[15m]) > 0')
