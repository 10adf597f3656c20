"""Structured logs: JSON lines with trace/span ids, human text on a terminal, secrets masked everywhere."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from binance_extractor import logs, telemetry

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
DB_PASSWORD = "s3cr3t-Pa55"


@pytest.fixture
def stream(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    monkeypatch.setenv("BINANCE_API_KEY", API_KEY)
    monkeypatch.delenv("BINANCE_LOG_FORMAT", raising=False)
    monkeypatch.delenv("BINANCE_LOG_LEVEL", raising=False)
    root = logging.getLogger()
    level = root.level
    out = io.StringIO()
    yield out
    if logs._handler is not None:
        root.removeHandler(logs._handler)
        logs._handler = None
    root.setLevel(level)


def _lines(out: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]


def test_json_lines_carry_level_logger_message_extras_and_trace_ids(stream: io.StringIO) -> None:
    logs.configure(json=True, stream=stream)
    log = logging.getLogger("binance_extractor.pipeline")
    with telemetry.capture() as cap:
        with telemetry.span("extract.symbol", symbol="BTCUSDT"):
            log.info("stored %d rows", 499, extra={"symbol": "BTCUSDT", "timeframe": "m5", "rows": 499})
        (job,) = cap.spans("extract.symbol")
    log.warning("outside any span")

    inside, outside = _lines(stream)
    assert inside["level"] == "INFO"
    assert inside["logger"] == "binance_extractor.pipeline"
    assert inside["message"] == "stored 499 rows"
    assert (inside["symbol"], inside["timeframe"], inside["rows"]) == ("BTCUSDT", "m5", 499)
    assert inside["trace_id"] == f"{job.context.trace_id:032x}"
    assert inside["span_id"] == f"{job.context.span_id:016x}"
    assert "timestamp" in inside
    assert outside["level"] == "WARNING"
    assert "trace_id" not in outside


def test_secrets_never_reach_the_output(stream: io.StringIO) -> None:
    logs.configure(json=True, stream=stream, verbose=True)
    logs.register_secret(DB_PASSWORD)
    log = logging.getLogger("binance_extractor.client")
    uri = "mysql://extractor:hunter2@db.internal:3306/binance"
    log.debug("request headers %s", {"X-MBX-APIKEY": API_KEY, "Accept": "application/json"})
    log.info("connecting to %s", uri, extra={"conn_uri": uri, "headers": {"X-MBX-APIKEY": "abcd1234efgh"}})
    log.info("retrying with password=%s and api_key=%s", "plain-pw", "k3y-value")
    log.info("json body", extra={"password": DB_PASSWORD, "config": {"password": "nested-pw", "host": "db"}})
    log.info("X-MBX-APIKEY: zzzz9999 sent; key in text %s", API_KEY)
    try:
        raise ConnectionError(f"cannot reach mongodb://app:{DB_PASSWORD}@mongo:27017/binance")
    except ConnectionError:
        log.exception("sink failed")

    text = stream.getvalue()
    for secret in (API_KEY, "hunter2", "abcd1234efgh", "plain-pw", "k3y-value", DB_PASSWORD, "nested-pw", "zzzz9999"):
        assert secret not in text, secret
    lines = _lines(stream)
    assert len(lines) == 6
    assert lines[1]["message"] == "connecting to mysql://extractor:***@db.internal:3306/binance"
    assert lines[1]["headers"] == {"X-MBX-APIKEY": "***"}
    assert lines[2]["message"] == "retrying with password=*** and api_key=***"
    assert lines[3]["password"] == "***" and lines[3]["config"] == {"password": "***", "host": "db"}
    assert "mongodb://app:***@mongo:27017/binance" in lines[5]["exc_info"]
    assert "ConnectionError" in lines[5]["exc_info"]


def test_mask_leaves_ordinary_text_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BINANCE_API_KEY", raising=False)
    for text in (
        "GET http://127.0.0.1:8080/fapi/v1/klines?symbol=BTCUSDT&limit=499",
        "stored 499 rows for BTCUSDT m5 in 0.4 s",
        "https://data.binance.vision/data/futures/um/monthly/klines/BTCUSDT/5m/BTCUSDT-5m-2026-01.zip",
    ):
        assert logs.mask(text) == text
    assert logs.mask("https://user:pw@host/x?password=p&b=1") == "https://user:***@host/x?password=***&b=1"
    assert logs.mask('{"passwd": "x1", "pwd":"y2"}') == '{"passwd": "***", "pwd":"***"}'


def test_human_format_and_tty_detection(stream: io.StringIO, monkeypatch: pytest.MonkeyPatch) -> None:
    logs.configure(json=False, stream=stream)
    with telemetry.capture(), telemetry.span("cli.klines") as current:
        logging.getLogger("binance_extractor.cli").info("password=%s done", "pw123")
    line = stream.getvalue().strip()
    assert "INFO" in line and "binance_extractor.cli: password=*** done" in line
    assert f"[trace_id={current.get_span_context().trace_id:032x}]" in line

    # auto mode: a StringIO is not a terminal -> JSON; the env can force text
    handler = logs.configure(stream=io.StringIO())
    assert isinstance(handler.formatter, logs.TraceJsonFormatter)
    monkeypatch.setenv("BINANCE_LOG_FORMAT", "text")
    handler = logs.configure(stream=io.StringIO())
    assert isinstance(handler.formatter, logs.HumanFormatter)
    ours = [h for h in logging.getLogger().handlers if any(isinstance(f, logs.MaskingFilter) for f in h.filters)]
    assert ours == [handler]  # configure() replaces its own handler instead of stacking


def test_verbose_switches_to_debug(stream: io.StringIO) -> None:
    logs.configure(json=True, stream=stream)
    logging.getLogger("binance_extractor.x").debug("hidden")
    logs.configure(json=True, stream=stream, verbose=True)
    logging.getLogger("binance_extractor.x").debug("shown")
    assert [line["message"] for line in _lines(stream)] == ["shown"]


def test_json_logs_of_a_child_process_carry_the_parent_trace() -> None:
    """What a pod does: TRACEPARENT in, JSON lines on stderr with the same trace id, key masked."""
    code = textwrap.dedent(
        """
        import logging, os
        from binance_extractor import logs, telemetry
        logs.configure()
        telemetry.setup()
        telemetry.extract_context_from_env()
        with telemetry.span("cli.klines"):
            logging.getLogger("binance_extractor.cli").info("using key %s", os.environ["BINANCE_API_KEY"])
        telemetry.shutdown()
        """
    )
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "BINANCE_LOG"))}
    env.update(PYTHONPATH=str(ROOT), BINANCE_API_KEY=API_KEY, TRACEPARENT=f"00-{trace_id}-b7ad6b7169203331-01")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    (line,) = [json.loads(x) for x in proc.stderr.splitlines() if x.startswith("{")]
    assert line["trace_id"] == trace_id
    assert line["message"] == "using key ***"
    assert API_KEY not in proc.stderr
