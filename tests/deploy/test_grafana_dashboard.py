"""The Grafana dashboard queries only series that exist, under the names Prometheus stores them.

Emitted instruments are read from the source (every ``instruments.counter/gauge/histogram("name", unit=...)``
call in binance_extractor/ and plugins/) and named by the translator the metrics go through on their way to
Prometheus (``opentelemetry-exporter-prometheus``, see ``telemetry_remote_write``): non-alphanumerics -> ``_``,
the unit as a suffix (``s`` -> ``_seconds``, ``By`` -> ``_bytes``; ``1`` and ``{annotations}`` add nothing),
counters -> ``_total``, histograms -> ``_bucket``/``_sum``/``_count``. Besides them: the process metrics
(``telemetry_exporters.SYSTEM_METRICS``) and the recording rules of deploy/prometheus/. Whether every query
returns data from a real Prometheus after a real run: tests/deploy/test_prometheus_end_to_end.py.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy/grafana/binance-extractor-dashboard.json"
RECORDING = ROOT / "deploy/prometheus/binance-recording.rules.yml"
DEFAULT_UNITS = {"counter": "1", "histogram": "s", "gauge": "1"}  # telemetry._Instruments defaults
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "le"}


def emitted_instruments() -> dict[str, tuple[str, str]]:
    """OTel name -> (kind, unit) for every instrument created in the library and the plugins."""
    found: dict[str, tuple[str, str]] = {}
    files = [*ROOT.glob("binance_extractor/**/*.py"), *ROOT.glob("plugins/*.py")]
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            kind = node.func.attr
            owner = node.func.value
            if kind not in DEFAULT_UNITS or not (isinstance(owner, ast.Attribute) and owner.attr == "instruments"):
                continue
            if not (node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
                continue
            unit = next((kw.value.value for kw in node.keywords if kw.arg == "unit"), DEFAULT_UNITS[kind])
            found[node.args[0].value] = (kind, str(unit))
    return found


def prometheus_names(name: str, kind: str, unit: str) -> set[str]:
    """The sample names ``opentelemetry-exporter-prometheus`` gives this instrument (the real translator)."""
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.sdk.metrics import MeterProvider
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    provider = MeterProvider(metric_readers=[PrometheusMetricReader(disable_target_info=True, registry=registry)])
    meter = provider.get_meter("names")
    if kind == "counter":
        meter.create_counter(name, unit=unit).add(1)
    elif kind == "histogram":
        meter.create_histogram(name, unit=unit).record(1)
    else:
        meter.create_gauge(name, unit=unit).set(1)
    try:
        return {sample.name for family in registry.collect() for sample in family.samples}
    finally:
        provider.shutdown()


def system_metric_names() -> set[str]:
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.instrumentation.system_metrics import SystemMetricsInstrumentor
    from opentelemetry.sdk.metrics import MeterProvider
    from prometheus_client import CollectorRegistry

    from binance_extractor.telemetry_exporters import SYSTEM_METRICS

    registry = CollectorRegistry(auto_describe=False)
    provider = MeterProvider(metric_readers=[PrometheusMetricReader(disable_target_info=True, registry=registry)])
    instrumentor = SystemMetricsInstrumentor(config=SYSTEM_METRICS)
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()
    instrumentor.instrument(meter_provider=provider)
    try:
        return {sample.name for family in registry.collect() for sample in family.samples}
    finally:
        instrumentor.uninstrument()
        provider.shutdown()


def recorded_names() -> set[str]:
    rules = yaml.safe_load(RECORDING.read_text())
    return {rule["record"] for group in rules["groups"] for rule in group["rules"]}


def emitted_metrics() -> set[str]:
    out: set[str] = set()
    for name, (kind, unit) in emitted_instruments().items():
        out |= prometheus_names(name, kind, unit)
    return out | system_metric_names() | recorded_names()


def expressions(obj: Any) -> Iterator[str]:
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key in ("expr", "definition") and isinstance(value, str):
                yield value
            else:
                yield from expressions(value)
    elif isinstance(obj, list):
        for item in obj:
            yield from expressions(item)


def metric_names(expr: str) -> set[str]:
    """Identifiers in metric position: label matchers, grouping clauses, ranges and strings stripped."""
    text = re.sub(r'"[^"]*"', "", expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", text)
    text = re.sub(r"label_values\(([^,]+),[^)]*\)", r"\1", text)
    names = set()
    for m in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        word = m.group(0)
        if word in PROMQL_WORDS or text[m.end() :].lstrip().startswith("("):
            continue  # keyword or function call
        if re.fullmatch(r"\d+[smhdwy]", word) or word.startswith("__"):
            continue
        names.add(word)
    return names


def test_the_scan_finds_the_instruments_the_readme_lists() -> None:
    found = emitted_instruments()
    readme = {
        "binance.http.requests", "binance.http.duration", "binance.weight.used", "binance.weight.budget",
        "binance.ratelimit.events", "binance.rows.extracted", "binance.rows.written", "binance.db.batch.duration",
        "binance.jobs", "binance.job.duration", "binance.gaps", "binance.freshness.lag", "binance.completeness",
        "binance.jobs.started", "binance.alerts",
    }  # fmt: skip
    assert readme <= set(found), readme - set(found)
    assert found["binance.freshness.lag"] == ("gauge", "s")
    assert found["binance.rows.written"][0] == "counter"


def test_translation_matches_prometheus_rules() -> None:
    assert prometheus_names("binance.rows.written", "counter", "1") == {"binance_rows_written_total"}
    assert prometheus_names("binance.freshness.lag", "gauge", "s") == {"binance_freshness_lag_seconds"}
    assert prometheus_names("binance.completeness", "gauge", "1") == {"binance_completeness"}
    assert prometheus_names("binance.weight.used", "gauge", "{weight}") == {"binance_weight_used"}
    assert "binance_job_duration_seconds_bucket" in prometheus_names("binance.job.duration", "histogram", "s")
    assert {"process_cpu_time_seconds_total", "process_memory_usage_bytes"} <= system_metric_names()
    assert "binance:kpi:completeness_ratio" in recorded_names()
    assert metric_names('sum by (kind) (increase(x_total{a="b"}[5m])) / max(y)') == {"x_total", "y"}


def test_every_queried_metric_is_emitted() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = list(expressions(dashboard))
    assert len(exprs) >= 15
    emitted = emitted_metrics()
    queried: set[str] = set()
    for expr in exprs:
        names = metric_names(expr)
        assert names, f"no metric in {expr!r}"
        missing = names - emitted
        assert not missing, f"{expr!r} queries {sorted(missing)}, which the code does not emit"
        queried |= names
    assert queried >= {"binance_freshness_lag_seconds", "binance_rows_written_total", "binance_weight_used",
                       "binance_weight_budget", "binance_ratelimit_events_total", "binance_jobs_total",
                       "binance_gaps_total", "binance_stream_lag_seconds_bucket", "binance_stream_reconnects_total",
                       "binance_stream_fills_total", "binance:kpi:completeness_ratio", "binance:kpi:freshness_seconds",
                       "binance:kpi:job_success_ratio", "process_cpu_time_seconds_total",
                       "process_memory_usage_bytes"}  # fmt: skip


def test_dashboard_covers_the_required_views() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    titles = " | ".join(p["title"].lower() for p in dashboard["panels"])
    for words in ("freshness lag per table", "rows written", "weight used vs budget", "429 / 418", "task failures",
                  "gap filler results", "tail lag", "tail reconnects and rest fills", "kpi completeness",
                  "kpi freshness", "kpi job success", "cpu cores", "resident memory"):  # fmt: skip
        assert words in titles, words
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    spots = [(p["gridPos"]["x"], p["gridPos"]["y"]) for p in dashboard["panels"]]
    assert len(spots) == len(set(spots)), "panels overlap"


def test_every_query_uses_the_datasource_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    names = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "symbol"} <= names
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]
        assert all(t["datasource"]["uid"] == "${datasource}" for t in panel["targets"]), panel["title"]


def test_kinds_of_job_are_told_apart_by_job_type() -> None:
    """Prometheus's own ``job`` label is the service name (``binance-extractor``, ``binance-stream``, ``airflow``);
    the code's kind of job (``airflow.task``, ``airflow.dag_run``, ``task_failure``, ``klines:5m``) is
    ``job_type``. No query may match a kind of job on ``job``."""
    kinds = ("airflow.", "task_failure", "dag_failure", "klines:", "funding:", "agg_trades:")
    for expr in expressions(json.loads(DASHBOARD.read_text())):
        for value in re.findall(r'\bjob\s*(?:=|!=|=~|!~)\s*"([^"]*)"', expr):
            assert not any(kind in value for kind in kinds), expr
    exprs = " ".join(expressions(json.loads(DASHBOARD.read_text())))
    assert 'job_type="airflow.task"' in exprs and 'job_type="airflow.dag_run"' in exprs


def test_the_configmap_is_the_dashboard() -> None:
    """deploy/grafana/*.configmap.yaml is generated from the JSON (scripts/grafana_configmap.py) and equal to it."""
    import subprocess
    import sys

    from kubernetes_validate import utils as kv

    configmap_path = DASHBOARD.with_name("binance-extractor-dashboard.configmap.yaml")
    configmap = yaml.safe_load(configmap_path.read_text())
    assert json.loads(configmap["data"]["binance-extractor-dashboard.json"]) == json.loads(DASHBOARD.read_text())
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert kv.validate(configmap, kv.major_minor(kv.latest_version()), strict=True)
    check = subprocess.run(
        [sys.executable, str(ROOT / "scripts/grafana_configmap.py"), "--check"], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stderr
