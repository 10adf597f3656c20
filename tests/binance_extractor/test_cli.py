"""The CLI as a real process against the emulator: data on stdout, and bad input as one line with exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from binance_extractor.timeutil import dt_to_ms
from tests.emulator.data import FIXTURES

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "binance_extractor", *args],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_help_lists_the_commands():
    out = run_cli("--help")
    assert out.returncode == 0
    for command in ("klines", "funding", "trades", "symbols"):
        assert command in out.stdout


def test_klines_to_jsonl_stdout_equals_the_exchange(emulator):
    start, end = datetime(2024, 5, 1, tzinfo=UTC), datetime(2024, 5, 4, 3, tzinfo=UTC)
    out = run_cli(
        "klines",
        "--interval",
        "m5",
        "--symbols",
        "BTCUSDT,ETHUSDT",
        "--start",
        start.isoformat(),
        "--end",
        "2024-05-04T03:00:00Z",
        "--source",
        "rest",
        "--sink",
        "jsonl",
        "--output",
        "-",
    )
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    for symbol in ("BTCUSDT", "ETHUSDT"):
        got = [r for r in rows if r["symbol"] == symbol]
        want = emulator.klines_rows(symbol, "5m", dt_to_ms(start), dt_to_ms(end) - 1)
        assert len(got) == len(want) == doc_count(start, end)
        assert [(r["open"], r["close"], r["quote_volume"]) for r in got] == [(w[1], w[4], w[7]) for w in want]


def doc_count(start: datetime, end: datetime) -> int:
    return int((end - start).total_seconds() // 300)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["klines", "--interval", "5m", "--symbols", "NOPEUSDT"], "symbol NOPEUSDT: unknown symbol"),
        (["klines", "--interval", "5m", "--symbols", "OLDUSDT"], "symbol OLDUSDT: not trading"),
        (["klines", "--interval", "7m", "--symbols", "BTCUSDT"], "unknown interval '7m'"),
        (["klines", "--interval", "5m", "--start", "2024-02-30"], "malformed date '2024-02-30'"),
        (["klines", "--interval", "5m", "--start", "2024-02-02", "--end", "2024-02-01"], "is not after --start"),
        (["klines", "--interval", "5m", "--sink", "oracle"], "unknown sink 'oracle'"),
        (["klines", "--interval", "5m", "--sink", "jsonl"], "needs --output"),
        (["klines", "--symbols", "BTCUSDT"], "the following arguments are required: --interval"),
        (["candles"], "invalid choice: 'candles'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(emulator, args, message):
    out = run_cli(*args)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], out.stderr
    assert "Traceback" not in out.stderr


def test_verbose_shows_the_traceback(emulator):
    out = run_cli("--verbose", "klines", "--interval", "5m", "--symbols", "NOPEUSDT")
    assert out.returncode == 2 and "Traceback" in out.stderr


def test_unreachable_exchange_fails_with_one_line_and_exit_1():
    out = run_cli(
        "klines",
        "--interval",
        "5m",
        "--symbols",
        "BTCUSDT",
        "--sink",
        "jsonl",
        "--output",
        "-",
        env={
            "BINANCE_FUTURES_BASE_URL": "http://127.0.0.1:9",
            "BINANCE_HTTP_MAX_ATTEMPTS": "2",
            "BINANCE_HTTP_BACKOFF_MAX": "0.1",
        },
    )
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1].startswith("error: ConnectionError")
    assert "Traceback" not in out.stderr


def test_api_key_never_appears_in_output_even_verbose(emulator):
    raw = json.loads((FIXTURES / "XRPETH-trades.json").read_text())
    out = run_cli(
        "--verbose",
        "trades",
        "--kind",
        "historical",
        "--symbols",
        "XRPETH",
        "--start",
        str(raw[0][0]),
        "--end",
        str(raw[0][0] + 60_000),
        "--sink",
        "jsonl",
        "--output",
        "-",
        env={"BINANCE_API_KEY": "test-key"},
    )
    assert out.returncode == 0, out.stderr
    assert "test-key" not in out.stderr and "test-key" not in out.stdout
    ids = [json.loads(line)["trade_id"] for line in out.stdout.splitlines()]
    assert ids and min(ids) > 2**32


def test_logs_are_json_lines_off_a_terminal(emulator, tmp_path):
    out = run_cli(
        "klines", "--interval", "1h", "--symbols", "BTCUSDT", "--start", "2024-01-01", "--end", "2024-01-02",
        "--source", "rest", "--sink", "jsonl", "--output", str(tmp_path / "out.jsonl"),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    events = [json.loads(line) for line in out.stderr.splitlines() if line.strip()]
    done = [e for e in events if e.get("event") == "job_done"]
    assert len(done) == 1 and done[0]["symbol"] == "BTCUSDT" and done[0]["rows_written"] == 24
    assert all("level" in e or "levelname" in e for e in events)


def test_progress_bar_on_a_terminal(emulator, tmp_path):
    """stderr attached to a pseudo-terminal: tqdm draws its bar there."""
    import fcntl
    import pty
    import struct
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a real terminal has a size
    proc = subprocess.Popen(
        [sys.executable, "-m", "binance_extractor", "klines", "--interval", "5m", "--symbols", "BTCUSDT",
         "--start", "2024-01-01", "--end", "2024-01-03", "--source", "rest", "--sink", "jsonl",
         "--output", str(tmp_path / "out.jsonl")],
        cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=follower,
    )  # fmt: skip
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    assert proc.wait(timeout=60) == 0
    os.close(leader)
    screen = b"".join(chunks).decode(errors="replace")
    assert "BTCUSDT 5m" in screen and "rows" in screen
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 576
