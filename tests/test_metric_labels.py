"""Metric attributes never use a label Prometheus sets itself.

Prometheus (scrape, remote write from the OpenTelemetry resource, or its OTLP receiver) sets ``job`` (from the
service name) and ``instance`` on every series; a metric attribute of the same name is renamed to
``exported_job`` or hidden, so a query on it silently matches nothing. ``le`` and ``quantile`` belong to
histograms and summaries. The code's kind of job is ``job_type``.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESERVED = {"job", "instance", "le", "quantile", "__name__"}


def _metric_modules() -> list[Path]:
    files = [*ROOT.glob("binance_extractor/**/*.py"), *ROOT.glob("plugins/*.py")]
    return [p for p in files if "telemetry" in p.read_text(encoding="utf-8")]


def test_no_metric_attribute_uses_a_prometheus_reserved_label() -> None:
    offenders = []
    for path in _metric_modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Dict):
                keys = {k.value for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)}
                offenders += [f"{path.relative_to(ROOT)}:{node.lineno} {k!r}" for k in sorted(keys & RESERVED)]
    assert not offenders, offenders


def test_the_scan_sees_the_emitters() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in _metric_modules()}
    assert {
        "binance_extractor/pipeline.py",
        "binance_extractor/airflow/callbacks.py",
        "plugins/binance_listener.py",
    } <= names
