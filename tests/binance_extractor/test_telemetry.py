"""Telemetry: span content and nesting, metric values, trace context propagation, and real OTLP/HTTP export.

Content is checked with the SDK's in-memory exporters (``telemetry.capture()``); export is checked end to end by
child processes that call ``setup()`` with ``OTEL_EXPORTER_OTLP_ENDPOINT`` pointing at a loopback OTLP receiver
started here (or at a closed port, for the collector-down case).
"""

from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from binance_extractor import telemetry

ROOT = Path(__file__).resolve().parents[2]
PARENT_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{PARENT_TRACE_ID}-{PARENT_SPAN_ID}-01"


# --------------------------------------------------------------------------- in-memory content


def test_spans_nest_with_attributes_and_record_errors() -> None:
    with telemetry.capture() as cap:
        with telemetry.span("cli.klines", command="klines"):
            http_attrs = {"http.route": "/fapi/v1/klines", "binance.weight": 2, "http.status_code": 200}
            with (
                telemetry.span("extract.symbol", symbol="BTCUSDT", timeframe="m5", kind="klines"),
                telemetry.span("binance.http", **http_attrs, unused=None) as http_span,
            ):
                http_span.set_attribute("binance.used_weight_after", 17)
            with pytest.raises(ValueError, match="bad row"), telemetry.span("sink.write", sink="sqlite", rows=5):
                raise ValueError("bad row")

        root = cap.spans("cli.klines")[0]
        job = cap.spans("extract.symbol")[0]
        http = cap.spans("binance.http")[0]
        write = cap.spans("sink.write")[0]

    assert job.parent.span_id == root.context.span_id
    assert http.parent.span_id == job.context.span_id
    assert write.parent.span_id == root.context.span_id
    assert {s.context.trace_id for s in (root, job, http, write)} == {root.context.trace_id}
    assert root.parent is None
    assert dict(job.attributes) == {"symbol": "BTCUSDT", "timeframe": "m5", "kind": "klines"}
    assert http.attributes["binance.weight"] == 2
    assert http.attributes["binance.used_weight_after"] == 17
    assert "unused" not in http.attributes
    assert write.status.status_code == trace.StatusCode.ERROR
    assert [e.name for e in write.events] == ["exception"]
    assert write.events[0].attributes["exception.type"] == "ValueError"
    assert root.resource.attributes["service.name"] == "binance-extractor"


def test_metric_values_and_second_buckets() -> None:
    with telemetry.capture() as cap:
        requests = telemetry.instruments.counter("binance.http.requests")
        requests.add(1, {"endpoint": "/fapi/v1/klines", "status": 200})
        requests.add(2, {"endpoint": "/fapi/v1/klines", "status": 200})
        requests.add(1, {"endpoint": "/fapi/v1/klines", "status": 429})
        duration = telemetry.instruments.histogram("binance.http.duration")
        for seconds in (0.02, 0.03, 0.7):
            duration.record(seconds, {"endpoint": "/fapi/v1/klines", "status": 200})
        weight = telemetry.instruments.gauge("binance.weight.used")
        weight.set(120)
        weight.set(135)
        telemetry.instruments.counter("binance.rows.written").add(
            499, {"kind": "klines", "symbol": "BTCUSDT", "timeframe": "m5", "sink": "sqlite", "skip": None}
        )

        assert cap.value("binance.http.requests", status=200) == 3
        assert cap.value("binance.http.requests", status=429) == 1
        assert cap.count("binance.http.duration", status=200) == 3
        assert cap.value("binance.http.duration") == pytest.approx(0.75)
        point = cap.points("binance.http.duration")[0]
        assert tuple(point.explicit_bounds) == telemetry.HTTP_BUCKETS
        assert point.bucket_counts[telemetry.HTTP_BUCKETS.index(0.025)] == 1  # 0.02 in (0.01, 0.025]
        assert cap.value("binance.weight.used") == 135
        written = cap.points("binance.rows.written")[0]
        assert dict(written.attributes) == {"kind": "klines", "symbol": "BTCUSDT", "timeframe": "m5", "sink": "sqlite"}
        assert written.value == 499


def test_instrument_handles_survive_provider_swaps() -> None:
    jobs = telemetry.instruments.counter("binance.jobs")  # taken before any provider, as module-level code does
    with telemetry.capture() as first:
        jobs.add(1, {"job_type": "klines", "outcome": "success"})
        assert first.value("binance.jobs", outcome="success") == 1
    with telemetry.capture() as second:
        jobs.add(1, {"job_type": "klines", "outcome": "failure"})
        assert second.value("binance.jobs", outcome="failure") == 1
        assert second.value("binance.jobs", outcome="success") == 0


def test_inject_then_extract_joins_the_trace() -> None:
    assert telemetry.inject_traceparent() == {}  # no current span: nothing to propagate
    with telemetry.capture() as cap:
        with telemetry.span("airflow.task") as task_span:
            env = telemetry.inject_traceparent()
        ctx = task_span.get_span_context()
        version, trace_id, span_id, flags = env["TRACEPARENT"].split("-")
        assert (version, trace_id, span_id) == ("00", f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}")
        assert int(flags, 16) & 1  # sampled: the child records its spans

        token = telemetry.extract_context_from_env(env)
        assert token is not None
        try:
            with telemetry.span("cli.klines"):
                pass
        finally:
            from opentelemetry import context

            context.detach(token)
        child = cap.spans("cli.klines")[0]
    assert child.context.trace_id == ctx.trace_id
    assert child.parent.span_id == ctx.span_id
    assert child.parent.is_remote


def test_extract_ignores_missing_or_invalid_traceparent() -> None:
    assert telemetry.extract_context_from_env({}) is None
    assert telemetry.extract_context_from_env({"TRACEPARENT": "00-zz-yy-01"}) is None
    assert telemetry.extract_context_from_env({"TRACEPARENT": f"00-{'0' * 32}-{PARENT_SPAN_ID}-01"}) is None


def test_unsampled_remote_parent_is_still_recorded() -> None:
    """Airflow marks its carrier unsampled when its own tracing is off; the pod's spans must still be kept."""
    with telemetry.capture() as cap:
        token = telemetry.extract_context_from_env({"TRACEPARENT": f"00-{PARENT_TRACE_ID}-{PARENT_SPAN_ID}-00"})
        try:
            with telemetry.span("cli.funding"):
                pass
        finally:
            from opentelemetry import context

            context.detach(token)
        (recorded,) = cap.spans("cli.funding")
    assert f"{recorded.context.trace_id:032x}" == PARENT_TRACE_ID


def test_resource_from_downward_api_and_otel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("K8S_POD_NAME", "klines-m5-abc")
    monkeypatch.setenv("K8S_NAMESPACE_NAME", "binance")
    monkeypatch.setenv("K8S_NODE_NAME", "node-1")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test,team=data")
    attrs = telemetry.resource().attributes
    assert attrs["service.name"] == "binance-extractor"
    assert attrs["service.version"] == telemetry.__version__
    assert attrs["k8s.pod.name"] == "klines-m5-abc"
    assert attrs["k8s.namespace.name"] == "binance"
    assert attrs["k8s.node.name"] == "node-1"
    assert attrs["deployment.environment"] == "test"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "extractor-pods")
    assert telemetry.resource().attributes["service.name"] == "extractor-pods"


# --------------------------------------------------------------------------- real OTLP/HTTP export

CHILD = textwrap.dedent(
    """
    import json, sys, threading, time
    from binance_extractor import telemetry
    work = {"on": False, "main_thread_connects": 0}
    def audit(event, args):
        if event == "socket.connect" and work["on"] and threading.current_thread() is threading.main_thread():
            work["main_thread_connects"] += 1
    sys.addaudithook(audit)
    first = telemetry.setup()
    again = telemetry.setup()
    token = telemetry.extract_context_from_env()
    started = time.monotonic()
    work["on"] = True
    with telemetry.span("cli.klines", command="klines"):
        with telemetry.span("extract.symbol", symbol="BTCUSDT", timeframe="m5", kind="klines"):
            telemetry.instruments.counter("binance.rows.extracted").add(
                1500, {"kind": "klines", "symbol": "BTCUSDT", "timeframe": "m5"})
            telemetry.instruments.histogram("binance.job.duration").record(
                2.5, {"job_type": "klines", "outcome": "success"})
            telemetry.instruments.gauge("binance.weight.used").set(42)
        ids = telemetry.current_ids()
    work["on"] = False
    elapsed = time.monotonic() - started
    started = time.monotonic()
    telemetry.shutdown()
    print(json.dumps({"first": first, "again": again, "joined": token is not None, "ids": ids,
                      "elapsed": elapsed, "shutdown": time.monotonic() - started,
                      "main_thread_connects": work["main_thread_connects"]}))
    """
)


def _child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "K8S_", "TRACE"))}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def _run_child(env: dict[str, str], timeout: float = 60) -> tuple[dict, float, str]:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", CHILD], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]), elapsed, proc.stderr


class _Receiver:
    """A minimal OTLP/HTTP collector: decodes protobuf POSTs to /v1/traces and /v1/metrics."""

    def __init__(self) -> None:
        self.traces: list[trace_service_pb2.ExportTraceServiceRequest] = []
        self.metrics: list[metrics_service_pb2.ExportMetricsServiceRequest] = []
        self.content_types: set[str] = set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                receiver.content_types.add(self.headers.get("Content-Type", ""))
                if self.path == "/v1/traces":
                    request = trace_service_pb2.ExportTraceServiceRequest()
                    request.ParseFromString(body)
                    receiver.traces.append(request)
                    reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                elif self.path == "/v1/metrics":
                    request_m = metrics_service_pb2.ExportMetricsServiceRequest()
                    request_m.ParseFromString(body)
                    receiver.metrics.append(request_m)
                    reply = metrics_service_pb2.ExportMetricsServiceResponse().SerializeToString()
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> _Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def spans(self) -> list[tuple[dict, object]]:
        out = []
        for request in self.traces:
            for rs in request.resource_spans:
                resource = {a.key: a.value.string_value for a in rs.resource.attributes}
                for ss in rs.scope_spans:
                    out.extend((resource, s) for s in ss.spans)
        return out

    def metric_points(self, name: str) -> list[object]:
        points: list[object] = []
        for request in self.metrics:
            for rm in request.resource_metrics:
                for sm in rm.scope_metrics:
                    for metric in sm.metrics:
                        if metric.name == name:
                            kind = metric.WhichOneof("data")
                            points.extend(getattr(metric, kind).data_points)
        return points


def _attrs(proto_attrs: object) -> dict[str, object]:
    out: dict[str, object] = {}
    for a in proto_attrs:  # type: ignore[attr-defined]
        value = a.value
        out[a.key] = getattr(value, value.WhichOneof("value"))
    return out


def test_spans_and_metrics_reach_a_real_otlp_http_receiver() -> None:
    with _Receiver() as receiver:
        env = _child_env(
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
            TRACEPARENT=TRACEPARENT,
            K8S_POD_NAME="klines-m5-xyz",
            K8S_NAMESPACE_NAME="binance",
            K8S_NODE_NAME="worker-3",
        )
        result, _, stderr = _run_child(env)
        spans = receiver.spans()
        extracted = receiver.metric_points("binance.rows.extracted")
        durations = receiver.metric_points("binance.job.duration")
        weights = receiver.metric_points("binance.weight.used")

    assert result["first"] is True and result["again"] is False and result["joined"] is True
    assert result["ids"][0] == PARENT_TRACE_ID  # log lines in the pod carry the Airflow task's trace id
    assert receiver.content_types == {"application/x-protobuf"}
    by_name = {s.name: (res, s) for res, s in spans}
    assert set(by_name) == {"cli.klines", "extract.symbol"}, stderr
    resource, root = by_name["cli.klines"]
    _, job = by_name["extract.symbol"]
    assert root.trace_id.hex() == PARENT_TRACE_ID
    assert root.parent_span_id.hex() == PARENT_SPAN_ID  # the pod's root span hangs under the Airflow task span
    assert job.trace_id.hex() == PARENT_TRACE_ID
    assert job.parent_span_id == root.span_id
    assert _attrs(job.attributes) == {"symbol": "BTCUSDT", "timeframe": "m5", "kind": "klines"}
    assert resource["service.name"] == "binance-extractor"
    assert resource["service.version"] == telemetry.__version__
    assert resource["k8s.pod.name"] == "klines-m5-xyz"
    assert resource["k8s.namespace.name"] == "binance"
    assert resource["k8s.node.name"] == "worker-3"
    assert [p.as_int for p in extracted] == [1500]
    assert _attrs(extracted[0].attributes) == {"kind": "klines", "symbol": "BTCUSDT", "timeframe": "m5"}
    assert [(p.count, p.sum) for p in durations] == [(1, 2.5)]
    assert list(durations[0].explicit_bounds) == list(telemetry.JOB_BUCKETS)
    assert [p.as_int or p.as_double for p in weights] == [42]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_collector_that_is_down_fails_nothing() -> None:
    env = _child_env(OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{_closed_port()}", TRACEPARENT=TRACEPARENT)
    result, _, stderr = _run_child(env)
    assert result["first"] is True and result["joined"] is True
    # the work itself never waits for the exporter: it never connects from the working thread (not a timing)
    assert result["main_thread_connects"] == 0
    # exit waits at most the flush budget (5 s), not the exporter's own 10 s timeout and retries; the slack is
    # for a loaded machine, the bug this catches takes 10 s or more
    assert result["shutdown"] < telemetry.FLUSH_TIMEOUT_MS / 1000 + 4
    assert "Traceback" not in stderr


def test_without_endpoint_nothing_is_exported_but_ids_exist() -> None:
    with _Receiver() as receiver:
        # A receiver is listening, but no endpoint is configured: nothing may arrive.
        result, _, _ = _run_child(_child_env())
    assert result["first"] is True
    assert result["ids"] is not None and result["ids"][0] != PARENT_TRACE_ID
    assert receiver.traces == [] and receiver.metrics == []


def test_sdk_disabled_installs_nothing() -> None:
    result, _, _ = _run_child(_child_env(OTEL_SDK_DISABLED="true", TRACEPARENT=TRACEPARENT))
    assert result["first"] is False
    # the API still propagates the parent context, so the ids stay those of the Airflow task
    assert result["ids"] == [PARENT_TRACE_ID, PARENT_SPAN_ID]


def test_the_cli_in_a_pod_joins_the_airflow_trace(emulator: object) -> None:
    """``python -m binance_extractor`` with TRACEPARENT in its env, as the pod template sets it."""
    with _Receiver() as receiver:
        env = _child_env(OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint, TRACEPARENT=TRACEPARENT, K8S_POD_NAME="pod-1")
        proc = subprocess.run(
            [sys.executable, "-m", "binance_extractor", "symbols", "--symbols", "BTCUSDT,NOPEUSDT"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        spans = receiver.spans()
        requests = receiver.metric_points("binance.http.requests")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["valid"] == ["BTCUSDT"]
    (cli,) = [s for _, s in spans if s.name == "cli.symbols"]
    http = [s for _, s in spans if s.name == "binance.http"]
    assert cli.trace_id.hex() == PARENT_TRACE_ID and cli.parent_span_id.hex() == PARENT_SPAN_ID
    assert http and all(s.trace_id == cli.trace_id and s.parent_span_id == cli.span_id for s in http)
    assert _attrs(http[0].attributes)["http.status_code"] == 200
    assert {r["k8s.pod.name"] for r, _ in spans} == {"pod-1"}
    assert sum(p.as_int for p in requests) == len(http)


def test_setup_after_shutdown_starts_fresh_exporters() -> None:
    """A process that runs the CLI twice in-process (tests, local tasks) exports both runs and warns about nothing."""
    code = textwrap.dedent(
        """
        import logging
        logging.basicConfig(level=logging.INFO)
        from binance_extractor import telemetry
        for n in (1, 2):
            assert telemetry.setup() is True
            with telemetry.span(f"round{n}"):
                telemetry.instruments.counter("binance.jobs").add(1, {"job_type": f"round{n}", "outcome": "success"})
            telemetry.shutdown()
            with telemetry.span("after-shutdown") as s:  # no-op, but still safe to use
                telemetry.instruments.counter("binance.jobs").add(1, {"job_type": "dropped"})
        """
    )
    with _Receiver() as receiver:
        env = _child_env(OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint)
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
        names = sorted(s.name for _, s in receiver.spans())
        jobs = sorted(_attrs(p.attributes)["job_type"] for p in receiver.metric_points("binance.jobs"))
    assert proc.returncode == 0, proc.stderr
    assert names == ["round1", "round2"]
    assert jobs == ["round1", "round2"]
    assert "WARNING" not in proc.stderr and "ignoring Span" not in proc.stderr, proc.stderr


def test_a_forked_child_does_not_re_export_the_parents_metrics() -> None:
    """Airflow forks (scheduler -> executor worker -> task process): each process reports only its own counts."""
    code = textwrap.dedent(
        """
        import os
        from binance_extractor import telemetry
        telemetry.setup()
        jobs = telemetry.instruments.counter("binance.jobs.started")
        jobs.add(1, {"job_type": "airflow.dag_run"})            # the scheduler saw a run start
        pid = os.fork()
        if pid == 0:                                       # the task process
            with telemetry.span("worker.task"):
                jobs.add(1, {"job_type": "airflow.task"})
            telemetry.shutdown(timeout_millis=120_000)  # who exports what is tested, not the budget
            os._exit(0)
        os.waitpid(pid, 0)
        jobs.add(1, {"job_type": "airflow.dag_run"})
        telemetry.shutdown(timeout_millis=120_000)  # a loaded machine may need more than 5 s
        """
    )
    with _Receiver() as receiver:
        env = _child_env(OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint, OTEL_METRIC_EXPORT_INTERVAL="200")
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
        by_instance: dict[str, dict[str, int]] = {}
        for request in receiver.metrics:
            for rm in request.resource_metrics:
                instance = _attrs(rm.resource.attributes)["service.instance.id"]
                for sm in rm.scope_metrics:
                    for metric in sm.metrics:
                        if metric.name != "binance.jobs.started":
                            continue  # (the process's CPU and memory are there too)
                        for point in metric.sum.data_points:
                            job = _attrs(point.attributes)["job_type"]
                            seen = by_instance.setdefault(instance, {})
                            seen[job] = max(seen.get(job, 0), point.as_int)
        spans = receiver.spans()
    assert proc.returncode == 0, proc.stderr
    assert sorted(by_instance.values(), key=len) == [{"airflow.task": 1}, {"airflow.dag_run": 2}]
    assert [s.name for _, s in spans] == ["worker.task"]


def test_a_klines_run_emits_the_documented_spans_and_metrics(
    emulator: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """cli.klines > extract.symbol > binance.http / sink.write, and the metric names dashboards rely on."""
    from binance_extractor import cli

    monkeypatch.setenv("BINANCE_EXTRACTOR_DATA_DIR", str(tmp_path))
    argv = ["klines", "--interval", "5m", "--symbols", "BTCUSDT", "--start", "2024-05-01", "--end", "2024-05-03"]
    with telemetry.capture() as cap:
        (result,) = cli.execute([*argv, "--source", "rest", "--sink", "sqlite"])
        (root,) = cap.spans("cli.klines")
        (job,) = cap.spans("extract.symbol")
        http = cap.spans("binance.http")
        writes = cap.spans("sink.write")
        rows_written = cap.value("binance.rows.written", symbol="BTCUSDT", timeframe="5m", sink="sqlite")
        requests = cap.value("binance.http.requests", status=200)
        lag = cap.points("binance.freshness.lag")
        weight = cap.points("binance.weight.used")
        jobs = cap.value("binance.jobs", outcome=result.outcome)

    assert result.rows_written == 2 * 288
    assert job.parent.span_id == root.context.span_id
    assert job.attributes["symbol"] == "BTCUSDT" and job.attributes["kind"] == "klines"
    assert http and all(s.context.trace_id == root.context.trace_id for s in http)
    klines_calls = [s for s in http if s.attributes["http.route"] == "/fapi/v1/klines"]
    assert klines_calls and all(s.parent.span_id == job.context.span_id for s in klines_calls)
    for s in klines_calls:
        assert s.attributes["http.status_code"] == 200
        assert s.attributes["binance.weight"] >= 1
        assert s.attributes["binance.used_weight_after"] >= s.attributes["binance.weight"]
        assert s.attributes["retry.count"] == 0
    assert writes and sum(s.attributes["rows"] for s in writes) == 2 * 288
    assert all(s.attributes["sink"] == "sqlite" and s.attributes["table"] == "klines_m5" for s in writes)
    assert rows_written == 2 * 288
    assert requests == len(http)
    assert jobs == 1
    assert weight and weight[0].value >= 1
    # the newest stored candle is from 2024: the store is far behind the newest closed candle
    assert [dict(p.attributes) for p in lag] == [{"kind": "klines", "symbol": "BTCUSDT", "timeframe": "5m"}]
    assert lag[0].value > 365 * 86400
