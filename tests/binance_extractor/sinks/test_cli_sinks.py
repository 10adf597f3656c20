"""The CLI end to end into each real store, against the loopback exchange emulator (subprocesses).

A multi-page range equals the source exactly; running it again changes nothing; a process killed mid-run
and re-run leaves the complete range once; concurrent CLI runs on overlapping ranges leave one row per key;
the database going away mid-run fails with a clear one-line error and a non-zero exit, and a re-run completes.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from binance_extractor.kinds import Dataset
from binance_extractor.models import Kline
from binance_extractor.timeutil import dt_to_ms, iso
from tests.binance_extractor.sinks.conftest import new_sink
from tests.fixtures.databases import MongoServer

KLINES_M5 = Dataset.of_table("klines_m5")

ROOT = Path(__file__).resolve().parents[3]
SYMBOL = "BTCUSDT"
START = datetime(2025, 3, 1, tzinfo=UTC)
END = START + timedelta(days=5)  # 1440 candles of 5m: three pages of 499
LONG_END = START + timedelta(days=30)  # 8640 candles: more than one pipeline write batch (5000)


def cli(kind: str, conn_id: str, start: datetime, end: datetime, **popen: Any) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "binance_extractor", "klines", "--interval", "5m", "--symbols", SYMBOL]
    argv += ["--start", iso(start), "--end", iso(end), "--source", "rest", "--sink", kind, "--conn-id", conn_id]
    return subprocess.Popen(
        argv, cwd=ROOT, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen
    )


def run_cli(kind: str, conn_id: str, start: datetime = START, end: datetime = END) -> tuple[int, str]:
    proc = cli(kind, conn_id, start, end)
    _, err = proc.communicate(timeout=240)
    return proc.returncode, err


def source(emu: Any, start: datetime = START, end: datetime = END) -> list[Kline]:
    rows = emu.klines_rows(SYMBOL, "5m", dt_to_ms(start), dt_to_ms(end) - 1)
    return [Kline.from_rest(SYMBOL, "5m", r) for r in rows]


def stored(kind: str, conn_id: str) -> list[Kline]:
    sink = new_sink(kind, conn_id)
    try:
        return [Kline(**r) for r in sink.read(KLINES_M5, SYMBOL)]
    finally:
        sink.close()


def count(kind: str, conn_id: str) -> int:
    sink = new_sink(kind, conn_id)
    try:
        return int(sink.count(KLINES_M5, SYMBOL))
    finally:
        sink.close()


def test_cli_writes_a_multi_page_range_equal_to_the_source_and_rerun_changes_nothing(
    store: tuple[str, str], emulator: Any
) -> None:
    kind, conn_id = store
    want = source(emulator)
    assert len(want) == 1440
    code, err = run_cli(kind, conn_id)
    assert code == 0, err
    assert stored(kind, conn_id) == want
    pages = emulator.count("/fapi/v1/klines")
    assert pages >= 3
    code, err = run_cli(kind, conn_id)
    assert code == 0, err
    assert stored(kind, conn_id) == want
    sink = new_sink(kind, conn_id)
    runs = sink.runs()
    sink.close()
    assert len(runs) == 2 and all(r.outcome == "success" and r.table == "klines_m5" for r in runs)
    assert {r.rows_written for r in runs} == {1440}


def test_cli_killed_mid_run_then_rerun_completes(store: tuple[str, str], make_emulator: Any) -> None:
    kind, conn_id = store
    emu = make_emulator(latency=0.4)  # slow pages so the kill lands mid-range
    want = source(emu, START, LONG_END)
    proc = cli(kind, conn_id, START, LONG_END, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if count(kind, conn_id) > 0:
                break
        except Exception:
            pass  # the schema may not exist yet
        time.sleep(0.1)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    partial = count(kind, conn_id)
    assert 0 < partial < len(want)
    emu.latency = 0.0
    code, err = run_cli(kind, conn_id, START, LONG_END)
    assert code == 0, err
    got = stored(kind, conn_id)
    assert got == want and len({k.open_time for k in got}) == len(want)


def test_concurrent_cli_runs_on_overlapping_ranges(store: tuple[str, str], make_emulator: Any) -> None:
    kind, conn_id = store
    emu = make_emulator(latency=0.05)
    # Empty database: both runs also race to create the schema.
    mid1, mid2 = START + timedelta(days=2), START + timedelta(days=3)
    procs = [cli(kind, conn_id, START, mid2), cli(kind, conn_id, mid1, END)]
    for p in procs:
        _, err = p.communicate(timeout=240)
        assert p.returncode == 0, err
    assert stored(kind, conn_id) == source(emu)


@pytest.fixture
def mongo_own(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[MongoServer, str]]:
    workdir = Path(tempfile.mkdtemp(prefix="bx-mongo-cli-"))
    server = MongoServer(workdir)
    server.start()
    monkeypatch.setenv("AIRFLOW_CONN_MONGO_DEFAULT", server.uri(f"bx_{uuid.uuid4().hex[:8]}"))
    yield server, "mongo_default"
    server.stop()
    shutil.rmtree(workdir, ignore_errors=True)


def _wait_rows(kind: str, conn_id: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if count(kind, conn_id) > 0:
                return
        except Exception:
            pass
        time.sleep(0.1)
    raise AssertionError("no rows appeared while the run was going")


@pytest.mark.parametrize(
    "kind", [pytest.param("mysql", marks=pytest.mark.mysql), pytest.param("mongo", marks=pytest.mark.mongo)]
)
def test_cli_database_going_away_mid_run(
    kind: str, make_emulator: Any, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BINANCE_EXTRACTOR_DB_RETRY_ATTEMPTS", "2")
    emu = make_emulator(latency=0.4)
    want = source(emu, START, LONG_END)
    if kind == "mysql":
        conn_id, proxy = request.getfixturevalue("mysql_proxy_conn_id")
        down, up = proxy.cut, proxy.start
        where = f"mysql sink (127.0.0.1:{proxy.port}/"
    else:
        server, conn_id = request.getfixturevalue("mongo_own")
        down, up = server.stop, server.start
        where = f"mongo sink (127.0.0.1:{server.port}/"
    proc = cli(kind, conn_id, START, LONG_END)
    _wait_rows(kind, conn_id, proc)
    down()
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 1, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ") and where in last, err
    up()
    emu.latency = 0.0
    code, err = run_cli(kind, conn_id, START, LONG_END)
    assert code == 0, err
    assert stored(kind, conn_id) == want
