"""``binance_maintenance``: retention configured in include/config.yaml deletes only expired rows, in batches."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import yaml

from binance_extractor import clock, config
from binance_extractor.kinds import Dataset
from binance_extractor.models import Kline
from binance_extractor.sinks import open_sinks
from binance_extractor.timeutil import dt_to_ms

KLINES_H1 = Dataset.of_table("klines_h1")
KLINES_M5 = Dataset.of_table("klines_m5")

ROOT = Path(__file__).resolve().parents[2]


def klines(symbol: str, start: datetime, n: int) -> list[Kline]:
    rows = []
    for i in range(n):
        t = dt_to_ms(start) + i * 300_000
        rows.append(
            Kline.from_rest(symbol, "5m", [t, "1.5", "1.6", "1.4", "1.55", "10", t + 299_999, "15", 3, "5", "7.5", "0"])
        )
    return rows


def config_with(tmp_path: Path, retention: dict) -> Path:
    raw = yaml.safe_load((ROOT / "include" / "config.yaml").read_text())
    raw["retention"] = retention
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_retention_task_deletes_expired_rows_only(
    frozen_clock, airflow_db, dagbag, sqlite_conn_id, tmp_path, monkeypatch
):
    monkeypatch.setenv("BINANCE_EXTRACTOR_SINKS", "sqlite")
    now = clock.now().replace(second=0, microsecond=0)  # pinned: the DAG's retention task sees the same instant
    old_start, new_start = now - timedelta(days=5), now - timedelta(hours=10)
    (sink,) = open_sinks(["sqlite"])
    for symbol in ("BTCUSDT", "ETHUSDT"):
        sink.write(KLINES_M5, klines(symbol, old_start, 60) + klines(symbol, new_start, 24))
        sink.write(KLINES_H1, [])
    before = sink.count(KLINES_M5)
    assert before == 2 * 84

    dag = dagbag.get_dag("binance_maintenance")
    monkeypatch.setenv("BINANCE_EXTRACTOR_CONFIG", str(config_with(tmp_path, {})))
    assert dag.test().state == "success"
    assert sink.count(KLINES_M5) == before  # off by default: nothing deleted

    monkeypatch.setenv("BINANCE_EXTRACTOR_CONFIG", str(config_with(tmp_path, {"klines_m5": 1, "klines_h1": None})))
    assert config.settings().retention == {"klines_m5": 1, "klines_h1": None}
    assert dag.test().state == "success"
    assert sink.count(KLINES_M5) == 2 * 24
    assert sink.first_time(KLINES_M5, "BTCUSDT") == new_start
    sink.close()


def test_bad_retention_setting_is_one_line_exit_2(tmp_path):
    path = config_with(tmp_path, {"klines_m5": -3})
    out = subprocess.run(
        [sys.executable, "-m", "binance_extractor", "retention", "--sink", "sqlite"],
        cwd=ROOT,
        env={**__import__("os").environ, "BINANCE_EXTRACTOR_CONFIG": str(path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert out.stderr.strip() == "error: retention for klines_m5 must be a positive number of days, not -3"


def test_the_maintenance_dag_comes_from_the_factory(dagbag):
    """Retries, timeout and alerts are the factory's, like every other family (it used to set its own: 2, none)."""
    from binance_extractor.airflow import callbacks, dagfactory

    dag = dagbag.get_dag("binance_maintenance")
    (task,) = dag.tasks
    assert task.task_id == "retention" and task.pool == "default_pool"
    assert task.retries == dagfactory.DEFAULT_ARGS["retries"] == 3
    assert task.execution_timeout == dagfactory.DEFAULT_ARGS["execution_timeout"]
    assert task.retry_exponential_backoff == 2.0 and task.max_retry_delay == timedelta(minutes=10)
    assert dag.on_failure_callback is callbacks.on_dag_failure or callbacks.on_dag_failure in dag.on_failure_callback
    assert {"binance", "maintenance"} <= set(dag.tags) and dag.max_active_runs == 1 and not dag.catchup
