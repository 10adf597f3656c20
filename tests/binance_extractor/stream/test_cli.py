"""``python -m binance_extractor stream`` as a real process: bad input, and SIGTERM flushing and exiting cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from binance_extractor.cli import main
from tests.binance_extractor.stream.harness import wait_until
from tests.emulator import Emulator

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["stream", "--symbols", "BTCUSDT", "--intervals", "7m"], "interval"),
        (["stream", "--symbols", "FOOUSDT"], "FOOUSDT"),
        (["stream", "--symbols", "BTCUSDT", "--streams-per-connection", "1025"], "1..1024"),
        (["stream", "--symbols", "BTCUSDT", "--sink", "jsonl"], "--output"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    emulator: Emulator, sqlite_conn_id: str, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    os.environ["BINANCE_FUTURES_WS_URL"] = emulator.ws_url
    try:
        assert main(argv) == 2
    finally:
        del os.environ["BINANCE_FUTURES_WS_URL"]
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert emulator.stream.connections_total == 0  # nothing was subscribed


def test_sigterm_flushes_and_exits_cleanly(emulator: Emulator, tmp_path: Path) -> None:
    db = tmp_path / "tail.sqlite"
    env = {
        **os.environ,
        "BINANCE_FUTURES_BASE_URL": emulator.url,
        "BINANCE_FUTURES_WS_URL": emulator.ws_url,
        "AIRFLOW_CONN_SQLITE_DEFAULT": "sqlite://" + quote(str(db), safe=""),
        "BINANCE_EXTRACTOR_HISTORY_DAYS": "1",
        "BINANCE_LOG_FORMAT": "json",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "binance_extractor", "stream", "--symbols", "BTCUSDT,ETHUSDT", "--intervals", "1m,1h"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []  # logs (stdout or stderr, per the logging setup) and the final JSON result

    def pump(stream: Any) -> None:
        for line in iter(stream.readline, ""):
            lines.append(line)

    readers = [threading.Thread(target=pump, args=(s,), daemon=True) for s in (proc.stdout, proc.stderr)]
    for r in readers:
        r.start()
    try:
        wait_until(lambda: sum("REST fill stored" in x for x in lines) >= 4 or proc.poll() is not None, "start-up")
        assert proc.poll() is None, "".join(lines)
        assert emulator.stream.active == 1  # four streams, one connection
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    for r in readers:
        r.join(5)
    assert proc.returncode == 0, "".join(lines)
    results = [json.loads(x) for x in lines if x.startswith('{"command": "stream"')]
    assert len(results) == 1, "".join(lines)
    result: dict[str, Any] = results[0]
    assert result["command"] == "stream" and result["connections"] == 1
    # one start-up fill; a second when the process started within a second of a minute's close (wall clock here):
    # that candle's close came before the socket opened, so it is filled once the closed bound passes it
    assert result["fills"] in (1, 2)
    assert result["fill_rows"] >= 2 * 1439 + 2 * 23
    assert any("stream: stopped" in x for x in lines)
    assert not any("error" in x.lower() or "Traceback" in x for x in lines), "".join(lines)
    wait_until(lambda: emulator.stream.active == 0, "the connection to close")
