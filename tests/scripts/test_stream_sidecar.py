"""``BINANCE_STREAM=1 make run``: the sidecar functions run-airflow.sh uses start the real tail and stop it cleanly."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from urllib.parse import quote

import pytest

from binance_extractor.kinds import Dataset
from binance_extractor.sinks.sqlite import SqliteStore
from tests.emulator import Emulator

KLINES_H1 = Dataset.of_table("klines_h1")

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
set -euo pipefail
set +m
source scripts/stream-sidecar.sh
stream_start
for _ in $(seq 1 1200); do
  grep -q "REST fill stored" "$AIRFLOW_HOME/stream.log" 2>/dev/null && break
  sleep 0.05
done
stream_stop
"""


def test_flag_starts_the_tail_and_stop_flushes_it(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "tail.sqlite"
    env = {
        **os.environ,
        "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}",
        "AIRFLOW_HOME": str(tmp_path),
        "BINANCE_STREAM": "1",
        "BINANCE_STREAM_ARGS": "--symbols BTCUSDT --intervals 1h",
        "BINANCE_FUTURES_BASE_URL": emulator.url,
        "BINANCE_FUTURES_WS_URL": emulator.ws_url,
        "AIRFLOW_CONN_SQLITE_DEFAULT": "sqlite://" + quote(str(db), safe=""),
        "BINANCE_EXTRACTOR_HISTORY_DAYS": "2",
    }
    out = subprocess.run(["bash", "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "run-airflow: live tail started" in out.stdout
    assert "run-airflow: live tail stopped (exit 0)" in out.stdout
    log = (tmp_path / "stream.log").read_text()
    assert "stream: stopped" in log and '"command": "stream"' in log
    assert emulator.stream.connections_total == 1
    monkeypatch.setenv("AIRFLOW_CONN_SQLITE_DEFAULT", env["AIRFLOW_CONN_SQLITE_DEFAULT"])
    sink = SqliteStore()
    try:
        assert sink.count(KLINES_H1, "BTCUSDT") >= 47  # two days of closed hours, stored by the tail's fill
    finally:
        sink.close()


def test_off_by_default(tmp_path: Path) -> None:
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path)}
    env.pop("BINANCE_STREAM", None)
    script = "set -euo pipefail; source scripts/stream-sidecar.sh; stream_start; stream_stop"
    out = subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "live tail" not in out.stdout and not (tmp_path / "stream.log").exists()
