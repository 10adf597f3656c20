"""The Grafana dashboard queries only metrics the code emits, under their Prometheus names.

Emitted instruments are read from the source (every ``instruments.counter/gauge/histogram("name", unit=...)``
call in binance_extractor/ and plugins/) and translated the way Prometheus's OTLP receiver and the OTel
collector's Prometheus exporters do (otlptranslator, with suffixes): non-alphanumerics -> ``_``; the unit as a
suffix (``s`` -> ``_seconds``; ``{annotations}`` dropped; a gauge of unit ``1`` -> ``_ratio``); monotonic
counters -> ``_total``; histograms -> ``_bucket``, ``_sum``, ``_count``.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy/grafana/binance-extractor-dashboard.json"
DEFAULT_UNITS = {"counter": "1", "histogram": "s", "gauge": "1"}  # telemetry._Instruments defaults
UNIT_WORDS = {"s": "seconds", "ms": "milliseconds", "By": "bytes", "%": "percent", "min": "minutes", "h": "hours"}
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
    base = re.sub(r"[^a-zA-Z0-9_:]", "_", name)
    unit = re.sub(r"\{[^}]*\}", "", unit)
    suffix = UNIT_WORDS.get(unit, unit)
    if unit == "1":
        suffix = "ratio" if kind == "gauge" else ""
    if suffix and not base.endswith("_" + suffix):
        base = f"{base}_{suffix}"
    if kind == "counter":
        return {base + "_total"}
    if kind == "histogram":
        return {base + "_bucket", base + "_sum", base + "_count"}
    return {base}


def emitted_metrics() -> set[str]:
    out: set[str] = set()
    for name, (kind, unit) in emitted_instruments().items():
        out |= prometheus_names(name, kind, unit)
    return out


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
    assert prometheus_names("binance.completeness", "gauge", "1") == {"binance_completeness_ratio"}
    assert prometheus_names("binance.weight.used", "gauge", "{weight}") == {"binance_weight_used"}
    assert "binance_job_duration_seconds_bucket" in prometheus_names("binance.job.duration", "histogram", "s")
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
                       "binance_gaps_total"}  # fmt: skip


def test_dashboard_covers_the_required_views() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    titles = " | ".join(p["title"].lower() for p in dashboard["panels"])
    for words in ("freshness lag per table", "rows written", "weight used vs budget", "429 / 418", "task failures",
                  "gap filler results"):  # fmt: skip
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


def test_no_query_relies_on_the_job_attribute() -> None:
    """Prometheus sets ``job`` from the resource's service.name on every OTLP series, which hides the code's
    own ``job`` attribute: the dashboard tells listener, callback and pipeline series apart by other labels."""
    for expr in expressions(json.loads(DASHBOARD.read_text())):
        assert not re.search(r"\bjob\s*(=|!=|=~|!~)", expr) and not re.search(r"by \([^)]*\bjob\b", expr), expr
