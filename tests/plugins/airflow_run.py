"""Run a tiny DAG with ``dag.test()`` (real Airflow: task runner, listeners, callbacks) and keep what it emitted.

The DAG file is written to a temp dir served as its own DAG bundle, so the project's ``dags/`` are not parsed.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from binance_extractor import telemetry


@dataclass
class DagRunResult:
    state: str
    run_id: str
    dag_id: str
    metrics: dict[str, list[dict[str, Any]]]
    spans: list[Any]
    records: list[logging.LogRecord] = field(default_factory=list)

    def value(self, metric: str, **attrs: Any) -> float:
        return sum(p["value"] for p in self.metrics.get(metric, []) if _match(p["attributes"], attrs))

    def count(self, metric: str, **attrs: Any) -> int:
        return sum(p["count"] for p in self.metrics.get(metric, []) if _match(p["attributes"], attrs))

    def events(self, event: str) -> list[logging.LogRecord]:
        return [r for r in self.records if getattr(r, "event", None) == event]


def _match(attributes: dict[str, Any], wanted: dict[str, Any]) -> bool:
    return all(attributes.get(k) == v for k, v in wanted.items())


class _Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


METRICS = (
    "binance.jobs",
    "binance.jobs.started",
    "binance.job.duration",
    "binance.alerts",
)


def run_dag(tmp_dir: Path, dag_id: str, source: str) -> DagRunResult:
    """Write ``source`` (defining ``dag``) to ``tmp_dir``, run ``dag.test()`` and collect telemetry + alert logs."""
    tmp_dir.mkdir(parents=True, exist_ok=True)
    path = tmp_dir / f"{dag_id}.py"
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    bundle = [
        {
            "name": f"tests-{dag_id}",
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(tmp_dir)},
        }
    ]
    keep = _Keep()
    alerts_log = logging.getLogger("binance_extractor.alerts")
    alerts_log.addHandler(keep)
    try:
        with pytest.MonkeyPatch.context() as mp, telemetry.capture() as cap:
            mp.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps(bundle))
            spec = importlib.util.spec_from_file_location(f"_test_dag_{dag_id}", path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            dag_run = module.dag.test()
            metrics: dict[str, list[dict[str, Any]]] = {}
            for name in METRICS:
                metrics[name] = [
                    {
                        "attributes": dict(p.attributes),
                        "value": p.sum if hasattr(p, "bucket_counts") else p.value,
                        "count": getattr(p, "count", 0),
                    }
                    for p in cap.points(name)
                ]
            spans = cap.spans()
    finally:
        alerts_log.removeHandler(keep)
    state = getattr(dag_run.state, "value", dag_run.state)
    return DagRunResult(str(state), dag_run.run_id, dag_id, metrics, spans, keep.records)
