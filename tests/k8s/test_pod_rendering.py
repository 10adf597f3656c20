"""Every mapped extraction pod of every DAG, rendered offline as KubernetesPodOperator would create it.

The DAGs are built by the project's DAG factory with the kubernetes runtime; each mapped task is unmapped
with the argv the DAG's own ``plan`` task produces, and ``build_pod_request_obj(dry_run=True)`` gives the
V1Pod (see ../shared/NOTES-verified.md). One pod per DAG family is then *run*: its container command, args
and env (downward API and Secret resolved) executed against the exchange emulator and real MariaDB, from a
copy of only the files the Dockerfile puts in the image.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import re
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import requests
import yaml
from kubernetes.client import ApiClient
from kubernetes_validate import utils as kv

from tests.k8s import image_sim as sim

ROOT = sim.ROOT
TEMPLATE = yaml.safe_load(sim.POD_TEMPLATE.read_text())
TEMPLATE_BASE = TEMPLATE["spec"]["containers"][0]
NAMESPACE = "petrosa-apps"
SECRET = next(yaml.safe_load_all((ROOT / "k8s_pod_templates" / "secret.example.yaml").read_text()))
NETWORK_POLICY = next(yaml.safe_load_all((ROOT / "k8s_pod_templates" / "networkpolicy.yaml").read_text()))
K8S_VERSION = "1.33"
SCHEDULED = ["binance_klines_m5", "binance_klines_m15", "binance_klines_m30", "binance_klines_h1", "binance_klines_d1"]
SCHEDULED += ["binance_funding_rates", "binance_trades"]
INTERVAL_END = datetime(2024, 3, 1, tzinfo=UTC)


def _build_dags(runtime: str) -> dict[str, Any]:
    from binance_extractor.airflow import dagfactory

    dags = dict(dagfactory.klines_dags(runtime=runtime))
    for dag in (dagfactory.funding_dag(runtime=runtime), dagfactory.trades_dag(runtime=runtime)):
        dags[dag.dag_id] = dag
    manual = dagfactory.manual_dag(runtime=runtime)
    dags[manual.dag_id] = manual
    return dags


@pytest.fixture(scope="module")
def kube_dags() -> dict[str, Any]:
    return _build_dags("kubernetes")


@pytest.fixture(scope="module")
def local_dags() -> dict[str, Any]:
    return _build_dags("local")


def _symbols() -> list[str]:
    from binance_extractor import config

    return list(config.settings().symbols)


def _data_interval(dag: Any, end: datetime) -> tuple[datetime, datetime]:
    """The candle window of a scheduled DAG's run ending at ``end``, from the cron of the DAG's own timetable."""
    from croniter import croniter

    assert str(dag.timetable.timezone) in ("UTC", "Timezone('UTC')")
    assert croniter.match(dag.timetable.expression, end), f"{end} is not on {dag.dag_id}'s schedule"
    start = croniter(dag.timetable.expression, end).get_prev(datetime)
    return start, end


def plan_argvs(
    dag: Any, symbols: list[str], run_type: str = "scheduled", end: datetime = INTERVAL_END
) -> list[list[str]]:
    """The argv of each spec the DAG's own ``plan`` task returns for a run (``extract`` maps over its kwargs)."""
    return [kw["arguments"] if "arguments" in kw else kw["argv"] for kw in plan_kwargs(dag, symbols, run_type, end)]


def plan_kwargs(
    dag: Any, symbols: list[str], run_type: str = "scheduled", end: datetime = INTERVAL_END
) -> list[dict[str, Any]]:
    """What the DAG's own ``plan`` task returns for a run: one ``jobspecs.task_kwargs`` per mapped pod."""
    plan = dag.get_task("plan")
    if dag.dag_id == "binance_klines_manual":
        req = {
            "valid": symbols,
            "invalid": {},
            "source": "params",
            "interval": "1h",
            "start": (end - timedelta(days=10)).isoformat(),
            "end": end.isoformat(),
            "sinks": [],
        }
        return plan.python_callable(req, dag=dag, run_id="manual__sim", dag_run=SimpleNamespace(run_type="manual"))
    start, end = _data_interval(dag, end)
    context = {
        "dag": dag,
        "run_id": f"{run_type}__{end.isoformat()}",
        "dag_run": SimpleNamespace(run_type=run_type),
        "data_interval_start": start,
        "data_interval_end": end,
    }
    return plan.python_callable({"valid": symbols, "invalid": {}, "source": "config"}, **context)


def render(dag: Any, argv: list[str]) -> tuple[Any, Any]:
    """The unmapped operator of one map index and the V1Pod it would create."""
    mapped = dag.get_task("extract")
    op = mapped.unmap({"arguments": argv, "map_label": "test", "spec": {}})
    op.render_template_fields({"dag": dag, "task": op, "ds": INTERVAL_END.date().isoformat()})
    return op, op.build_pod_request_obj(dry_run=True)


def as_manifest(pod: Any) -> dict[str, Any]:
    """V1Pod -> the camelCase manifest the API server would receive."""
    return ApiClient().sanitize_for_serialization(pod)


def _option(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


# --------------------------------------------------------------------------------------------- parse time


def test_runtime_env_var_selects_kubernetes_pods_at_parse_time(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    monkeypatch.setenv("BINANCE_EXTRACTOR_RUNTIME", "kubernetes")
    spec = importlib.util.spec_from_file_location("k8s_runtime_klines_dags", ROOT / "dags" / "binance_klines.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dags = {v.dag_id: v for v in vars(module).values() if type(v).__name__ == "DAG"}
    assert set(dags) == set(SCHEDULED[:5])
    for dag in dags.values():
        extract = dag.get_task("extract")
        assert issubclass(extract.operator_class, KubernetesPodOperator)
        kwargs = extract.partial_kwargs
        assert Path(kwargs["pod_template_file"]).resolve() == sim.POD_TEMPLATE.resolve()
        assert kwargs["namespace"] == NAMESPACE


def test_namespace_image_and_service_account_come_from_config_and_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """No deployment constants in code: a config file sets them, the environment wins over it."""
    from binance_extractor.airflow import dagfactory

    cfg = yaml.safe_load((ROOT / "include" / "config.yaml").read_text())
    cfg["kubernetes"] = {"namespace": "ns-from-config", "service_account": "sa-config", "image": "reg/x:1"}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    monkeypatch.setenv("BINANCE_EXTRACTOR_CONFIG", str(path))
    dag = dagfactory.funding_dag(runtime="kubernetes")
    (argv,) = plan_argvs(dag, ["BTCUSDT"])
    meta, spec = as_manifest(render(dag, argv)[1])["metadata"], as_manifest(render(dag, argv)[1])["spec"]
    assert (meta["namespace"], spec["serviceAccountName"]) == ("ns-from-config", "sa-config")
    assert spec["containers"][0]["image"] == "reg/x:1"

    monkeypatch.setenv("BINANCE_EXTRACTOR_NAMESPACE", "ns-from-env")
    monkeypatch.setenv("BINANCE_EXTRACTOR_SERVICE_ACCOUNT", "sa-env")
    monkeypatch.setenv("BINANCE_EXTRACTOR_IMAGE", "reg/x:2")
    dag = dagfactory.funding_dag(runtime="kubernetes")
    manifest = as_manifest(render(dag, argv)[1])
    assert (manifest["metadata"]["namespace"], manifest["spec"]["serviceAccountName"]) == ("ns-from-env", "sa-env")
    assert manifest["spec"]["containers"][0]["image"] == "reg/x:2"
    assert "--binance-conn-id" in manifest["spec"]["containers"][0]["args"]


# --------------------------------------------------------------------------------------------- every pod


def _check_pod(manifest: dict[str, Any], argv: list[str]) -> None:
    meta, spec = manifest["metadata"], manifest["spec"]
    assert meta["namespace"] == NAMESPACE
    assert TEMPLATE["metadata"]["labels"].items() <= meta["labels"].items()
    # The NetworkPolicy must select every extraction pod.
    assert NETWORK_POLICY["spec"]["podSelector"]["matchLabels"].items() <= meta["labels"].items()
    assert spec["serviceAccountName"] == "binance-extractor"
    assert spec["automountServiceAccountToken"] is False
    assert spec["restartPolicy"] == "Never"
    assert spec["securityContext"] == TEMPLATE["spec"]["securityContext"]

    base = spec["containers"][0]
    assert base["name"] == "base"
    assert base["image"] == TEMPLATE_BASE["image"] == "binance-extractor:0.1.0"
    assert base["command"] == sim.entrypoint(sim.parser()) == TEMPLATE_BASE["command"]
    assert base["args"] == argv
    assert base["resources"] == {
        "requests": {"cpu": "500m", "memory": "512Mi"},
        "limits": {"cpu": "2", "memory": "2Gi"},
    }
    assert base["securityContext"] == TEMPLATE_BASE["securityContext"]
    assert base["securityContext"]["readOnlyRootFilesystem"] is True
    assert base["envFrom"] == [{"secretRef": {"name": SECRET["metadata"]["name"]}}]

    env = base["env"]
    names = [e["name"] for e in env]
    assert len(names) == len(set(names)), "duplicate env names"
    # The template's env comes first and unchanged (downward API before OTEL_RESOURCE_ATTRIBUTES).
    assert env[: len(TEMPLATE_BASE["env"])] == TEMPLATE_BASE["env"]
    values = {e["name"]: e.get("value") for e in env}
    assert values["BINANCE_EXTRACTOR_SINKS"] == "mysql"
    assert values["OTEL_SERVICE_NAME"] == "binance-extractor"
    assert values["OTEL_EXPORTER_OTLP_ENDPOINT"].startswith("http://")
    fields = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in env if "valueFrom" in e}
    assert fields["K8S_POD_NAME"] == "metadata.name"
    assert fields["K8S_NAMESPACE_NAME"] == "metadata.namespace"
    assert fields["K8S_NODE_NAME"] == "spec.nodeName"
    assert "k8s.pod.name=$(K8S_POD_NAME)" in values["OTEL_RESOURCE_ATTRIBUTES"]
    assert "TRACEPARENT" not in names, "trace context is set at execute time only, never at parse time"

    # Read-only root filesystem: every path the CLI writes must sit on a writable volume.
    mounts = {m["mountPath"]: m["name"] for m in base["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    written = [values["HOME"], values["AIRFLOW_HOME"], values["BINANCE_EXTRACTOR_DATA_DIR"]]
    xcom_file = _option(argv, "--xcom-file")
    assert xcom_file == "/airflow/xcom/return.json", "the pod must hand its results to XCom"
    written.append(str(Path(xcom_file).parent))
    for path in written:
        mount = next((m for m in mounts if path == m or path.startswith(m + "/")), None)
        assert mount is not None, f"{path} is not on a writable mount"
        assert "emptyDir" in volumes[mounts[mount]]
    # The xcom sidecar the operator adds inherits the pod's non-root identity.
    names_of_containers = [c["name"] for c in spec["containers"]]
    assert names_of_containers == ["base", "airflow-xcom-sidecar"]
    for container in spec["containers"][1:]:
        csc = container.get("securityContext") or {}
        assert csc.get("runAsNonRoot", spec["securityContext"]["runAsNonRoot"]) is True
        assert csc.get("runAsUser", spec["securityContext"]["runAsUser"]) != 0
        assert csc["allowPrivilegeEscalation"] is False and csc["capabilities"]["drop"] == ["ALL"]


@pytest.mark.parametrize("dag_id", [*SCHEDULED, "binance_klines_manual"])
def test_every_mapped_pod_renders_hardened_with_its_symbol(kube_dags: dict[str, Any], dag_id: str) -> None:
    dag = kube_dags[dag_id]
    symbols = _symbols() if dag_id != "binance_klines_manual" else ["BTCUSDT", "ETHUSDT"]
    argvs = plan_argvs(dag, symbols)
    expected_per_symbol = 1 if dag_id != "binance_klines_manual" else 2  # 10 days = 2 weekly chunks
    assert len(argvs) == len(symbols) * expected_per_symbol
    pod_names = set()
    for index, argv in enumerate(argvs):
        _, pod = render(dag, argv)
        manifest = as_manifest(pod)
        _check_pod(manifest, argv)
        assert _option(manifest["spec"]["containers"][0]["args"], "--symbols") == symbols[index // expected_per_symbol]
        pod_names.add(manifest["metadata"]["name"])
        if index == 0:
            # The merged pod (template + operator + xcom sidecar) is a valid Pod for the API server.
            assert kv.validate(manifest, K8S_VERSION, strict=True) == K8S_VERSION
    assert len(pod_names) == len(argvs), "every mapped task gets its own pod name"


@pytest.mark.parametrize("dag_id", SCHEDULED)
@pytest.mark.parametrize("run_type", ["scheduled", "backfill"])
def test_pod_args_equal_the_local_runtime_argv(
    kube_dags: dict[str, Any], local_dags: dict[str, Any], dag_id: str, run_type: str
) -> None:
    """Both runtimes call the same builder: the pod's args are the in-process argv plus the XCom hand-off."""
    symbols = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
    pods = plan_argvs(kube_dags[dag_id], symbols, run_type)
    local = plan_argvs(local_dags[dag_id], symbols, run_type)
    assert len(pods) == len(local) == len(symbols)
    for pod_argv, local_argv in zip(pods, local, strict=True):
        assert pod_argv == [*local_argv, "--xcom-file", "/airflow/xcom/return.json"]
        _, pod = render(kube_dags[dag_id], pod_argv)
        assert pod.spec.containers[0].args == pod_argv
    # Backfills extract exactly their data interval; scheduled klines/funding runs resume incrementally.
    first = pods[0]
    assert _option(first, "--end") is not None
    assert ("--incremental" in first) == (run_type == "scheduled" and dag_id != "binance_trades")


def test_manual_pod_args_equal_the_local_runtime_argv(kube_dags: dict[str, Any], local_dags: dict[str, Any]) -> None:
    pods = plan_argvs(kube_dags["binance_klines_manual"], ["BTCUSDT"])
    local = plan_argvs(local_dags["binance_klines_manual"], ["BTCUSDT"])
    assert pods == [[*argv, "--xcom-file", "/airflow/xcom/return.json"] for argv in local]
    assert len(pods) == 2


# --------------------------------------------------------------------------------------------- trace context


def test_traceparent_joins_the_pod_to_the_task_trace(kube_dags: dict[str, Any]) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    dag = kube_dags["binance_klines_h1"]
    argv = plan_argvs(dag, ["BTCUSDT"])[0]
    op, _ = render(dag, argv)
    assert hasattr(op, "add_trace_env"), "the DAGs must use TracedKubernetesPodOperator"

    # No active span: nothing injected.
    op.add_trace_env()
    env_names = [e.name for e in op.build_pod_request_obj(dry_run=True).spec.containers[0].env]
    assert "TRACEPARENT" not in env_names

    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("airflow task") as span:
        op.add_trace_env()
        ctx = span.get_span_context()
    pod = op.build_pod_request_obj(dry_run=True)
    env = pod.spec.containers[0].env
    traceparent = next(e.value for e in env if e.name == "TRACEPARENT")
    assert traceparent == f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}"
    # Added after the template's env, which stays intact; a retry replaces it rather than duplicating it.
    template_names = [e["name"] for e in TEMPLATE_BASE["env"]]
    assert [e.name for e in env][: len(template_names)] == template_names
    with tracer.start_as_current_span("retry"):
        op.add_trace_env()
    env = op.build_pod_request_obj(dry_run=True).spec.containers[0].env
    assert [e.name for e in env].count("TRACEPARENT") == 1
    assert kv.validate(as_manifest(pod), K8S_VERSION, strict=True) == K8S_VERSION


# --------------------------------------------------------------------------------------------- pod execution


def resolve_container_env(manifest: dict[str, Any], secret: dict[str, str], node: str) -> dict[str, str]:
    """What the kubelet gives the container: envFrom first, then env in order, with $(VAR) expansion."""
    fields = {
        "metadata.name": manifest["metadata"]["name"],
        "metadata.namespace": manifest["metadata"]["namespace"],
        "metadata.uid": str(uuid.uuid4()),
        "spec.nodeName": node,
    }
    base = manifest["spec"]["containers"][0]
    out: dict[str, str] = {}
    for source in base.get("envFrom", []):
        assert source["secretRef"]["name"] == SECRET["metadata"]["name"]
        out.update(secret)
    for e in base.get("env", []):
        if "valueFrom" in e:
            out[e["name"]] = fields[e["valueFrom"]["fieldRef"]["fieldPath"]]
        else:
            out[e["name"]] = re.sub(r"\$\((\w+)\)", lambda m: out.get(m.group(1), m.group(0)), e.get("value", ""))
    return out


class OtlpReceiver:
    """A real OTLP/HTTP endpoint on loopback: stores every export request body by signal."""

    def __init__(self) -> None:
        received: dict[str, list[bytes]] = {"traces": [], "metrics": [], "logs": []}

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                received.setdefault(self.path.rsplit("/", 1)[-1], []).append(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.received = received
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def spans(self) -> list[tuple[dict[str, str], Any]]:
        """(resource attributes, span) of every span received."""
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        out = []
        for body in self.received["traces"]:
            for rs in ExportTraceServiceRequest.FromString(body).resource_spans:
                attrs = {kv.key: kv.value.string_value for kv in rs.resource.attributes}
                out.extend((attrs, span) for ss in rs.scope_spans for span in ss.spans)
        return out


@pytest.fixture
def otlp_receiver() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


@pytest.fixture
def mysql_database() -> Iterator[str]:
    """A fresh database on the local MariaDB, dropped afterwards."""
    import MySQLdb

    name = f"k8s_pods_{uuid.uuid4().hex[:10]}"
    conn = MySQLdb.connect(host="127.0.0.1", user="root", port=3306)
    try:
        conn.cursor().execute(f"CREATE DATABASE {name}")
        yield name
    finally:
        conn.cursor().execute(f"DROP DATABASE IF EXISTS {name}")
        conn.close()


def _query(database: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    import MySQLdb

    conn = MySQLdb.connect(host="127.0.0.1", user="root", port=3306, database=database)
    try:
        cur = conn.cursor()
        cur.execute(sql, args)
        return list(cur.fetchall())
    finally:
        conn.close()


@pytest.mark.mysql
def test_rendered_pods_run_the_image_cli_into_mysql(
    kube_dags: dict[str, Any], emulator: Any, mysql_database: str, otlp_receiver: OtlpReceiver, tmp_path: Path
) -> None:
    """Each rendered pod's command + args + env, run from the image's files only: data lands, XCom is written,
    and the pod's spans reach the collector with its pod/namespace/node and join the Airflow task's trace."""
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("airflow-task-stand-in")
    orphans: set[str] = set()
    df = sim.parser()
    app = sim.image_app(df, tmp_path / "image")
    copied = sorted(p for p in app.rglob("*") if p.is_file())
    dag = kube_dags["binance_klines_h1"]
    now = datetime.now(UTC)
    end = now.replace(minute=0, second=0, microsecond=0)
    symbols = ["BTCUSDT", "ETHUSDT"]
    secret = {
        # The exchange through binance_default (every argv names it); the env's base URL below is a dead end.
        "AIRFLOW_CONN_BINANCE_DEFAULT": json.dumps({"conn_type": "binance", "host": emulator.url, "password": "k"}),
        "AIRFLOW_CONN_MYSQL_DEFAULT": f"mysql://root@127.0.0.1:3306/{mysql_database}",
        "AIRFLOW_CONN_MONGO_DEFAULT": SECRET["stringData"]["AIRFLOW_CONN_MONGO_DEFAULT"],  # unused by the mysql sink
        "AIRFLOW_CONN_POSTGRES_DEFAULT": SECRET["stringData"]["AIRFLOW_CONN_POSTGRES_DEFAULT"],  # unused here too
        "BINANCE_API_KEY": "test-key",
        # Both pods reserve weight in one shared store, as pods on one egress IP do in production (a real Redis).
        "BINANCE_EXTRACTOR_BUDGET_URL": "redis://127.0.0.1:6379/0",
    }
    assert set(secret) == set(SECRET["stringData"]), "the pod needs exactly the example Secret's keys"
    budget_name = os.environ["BINANCE_EXTRACTOR_BUDGET_NAME"]  # this test's own budget (tests/conftest.py)

    for symbol, argv in zip(symbols, plan_argvs(dag, symbols, "scheduled", end), strict=True):
        op, _ = render(dag, argv)
        with tracer.start_as_current_span(f"extract {symbol}") as task_span:
            op.add_trace_env()  # what TracedKubernetesPodOperator.execute does inside the task's span
        task_ctx = task_span.get_span_context()
        manifest = as_manifest(op.build_pod_request_obj(dry_run=True))
        base = manifest["spec"]["containers"][0]
        pod_tmp, xcom_dir = tmp_path / f"{symbol}-tmp", tmp_path / f"{symbol}-xcom"
        pod_tmp.mkdir()
        xcom_dir.mkdir()
        mounts = {sim.APP_DIR: app, "/tmp": pod_tmp, "/airflow/xcom": xcom_dir}
        env = sim.image_env(df, mounts)  # image ENV, overridden by the container env as in Kubernetes
        container_env = resolve_container_env(manifest, secret, node="sim-node-1")
        assert container_env["OTEL_RESOURCE_ATTRIBUTES"].startswith(f"k8s.pod.name={manifest['metadata']['name']},")
        env.update({k: sim.map_path(v, mounts) for k, v in container_env.items()})
        assert env["TRACEPARENT"].split("-")[1] == f"{task_ctx.trace_id:032x}"
        # Test-only differences: the emulator instead of Binance, a loopback collector instead of the cluster's.
        env["BINANCE_FUTURES_BASE_URL"] = "http://127.0.0.1:9"  # unused: the Secret's binance_default wins
        env["BINANCE_ARCHIVE_BASE_URL"] = emulator.archive_url
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = otlp_receiver.url
        env["BINANCE_EXTRACTOR_BUDGET_NAME"] = budget_name

        assert base["command"][0] == "python"
        cmd = [sys.executable, *base["command"][1:], *(sim.map_path(a, mounts) for a in base["args"])]
        result = subprocess.run(cmd, cwd=app, env=env, capture_output=True, text=True, timeout=240)
        assert result.returncode == 0, f"pod for {symbol} failed: {result.stderr[-2000:]}"

        results = json.loads((xcom_dir / "return.json").read_text())
        assert isinstance(results, list) and len(results) == 1
        res = results[0]
        assert (res["symbol"], res["kind"], res["interval"], res["table"]) == (symbol, "klines", "1h", "klines_h1")
        rows = _query(
            mysql_database,
            "SELECT open_time, open, high, low, close, volume FROM klines_h1 WHERE symbol = %s ORDER BY open_time",
            symbol,
        )
        assert rows and res["rows_written"] == len(rows)
        stored_last = rows[-1][0].replace(tzinfo=UTC) if rows[-1][0].tzinfo is None else rows[-1][0]
        assert datetime.fromisoformat(res["last_time"].replace("Z", "+00:00")) == stored_last
        assert stored_last == end - timedelta(hours=1), "the run reaches its data interval's last closed candle"

        # What landed equals the exchange's candles over the same range.
        first_ms = int(rows[0][0].replace(tzinfo=UTC).timestamp() * 1000)
        source: list[list[Any]] = []
        while len(source) < len(rows):
            page = requests.get(
                f"{emulator.url}/fapi/v1/klines",
                params={"symbol": symbol, "interval": "1h", "startTime": first_ms, "limit": 1000},
                timeout=10,
            ).json()
            assert page
            source += page
            first_ms = page[-1][0] + 3_600_000
        source = source[: len(rows)]
        for stored, k in zip(rows, source, strict=True):
            assert int(stored[0].replace(tzinfo=UTC).timestamp() * 1000) == k[0]
            assert [Decimal(str(v)) for v in stored[1:]] == [Decimal(v) for v in k[1:6]]

        # The read-only root filesystem: nothing new under /app; writes went to the emptyDir stand-ins.
        assert sorted(p for p in app.rglob("*") if p.is_file()) == copied

        # Telemetry: the downward API became resource attributes, and the pod's spans joined the task's trace.
        pod_spans = [
            (a, sp) for a, sp in otlp_receiver.spans() if a.get("k8s.pod.name") == manifest["metadata"]["name"]
        ]
        assert pod_spans, f"no spans from pod {manifest['metadata']['name']}"
        attrs = pod_spans[0][0]
        assert attrs["k8s.namespace.name"] == NAMESPACE
        assert attrs["k8s.node.name"] == "sim-node-1"
        assert attrs["service.name"] == "binance-extractor"
        trace_id, task_span_id = task_ctx.trace_id.to_bytes(16, "big"), task_ctx.span_id.to_bytes(8, "big")
        (cli_span,) = [sp for _, sp in pod_spans if sp.name == "cli.klines"]
        assert cli_span.trace_id == trace_id and cli_span.parent_span_id == task_span_id
        joined = [sp for _, sp in pod_spans if sp.trace_id == trace_id]
        joined_ids = {sp.span_id for sp in joined}
        assert all(sp.parent_span_id in joined_ids for sp in joined if sp is not cli_span)
        assert {"cli.klines", "binance.http"} <= {sp.name for sp in joined}
        orphans.update(sp.name for _, sp in pod_spans if sp.trace_id != trace_id)

    # Spans started in worker threads (page fetches, archive downloads, the writer) join the task's trace too.
    assert not orphans, f"pod spans outside the task's trace: {sorted(orphans)}"


def test_secret_keys_are_what_the_pod_reads(kube_dags: dict[str, Any]) -> None:
    """The pod's connection env comes only from the Secret, under the names Airflow and the client read."""
    from binance_extractor.sinks.mongo import DEFAULT_CONN_ID as MONGO_ID
    from binance_extractor.sinks.mysql import DEFAULT_CONN_ID as MYSQL_ID
    from binance_extractor.sinks.postgres import DEFAULT_CONN_ID as POSTGRES_ID

    keys = set(SECRET["stringData"])
    assert f"AIRFLOW_CONN_{MYSQL_ID.upper()}" in keys
    assert f"AIRFLOW_CONN_{POSTGRES_ID.upper()}" in keys
    assert f"AIRFLOW_CONN_{MONGO_ID.upper()}" in keys
    assert "BINANCE_API_KEY" in keys
    _, pod = render(kube_dags["binance_klines_h1"], plan_argvs(kube_dags["binance_klines_h1"], ["BTCUSDT"])[0])
    env_names = {e.name for e in pod.spec.containers[0].env}
    assert not keys & env_names, "credentials must not be inlined in the pod spec"
