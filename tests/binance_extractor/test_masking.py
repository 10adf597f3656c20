"""No part of a password ever shows: one masking function, URLs split where the drivers split them.

Passwords hold ``@`` (once and several times), ``:``, ``/`` and ``%40``. The budget store's URL is the one the
project shows most (its "unreachable" error reaches the CLI's stderr, the logs, the audit table's ``error``
column and the data-health page, the gap filler's XCom and the OpenTelemetry span events), so each of those
outputs is produced for real with such a URL and searched for every piece of the password.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

from binance_extractor import gaps, masking, telemetry, timeframes
from binance_extractor.budget import open_budget_store
from binance_extractor.client import BinanceFuturesClient
from binance_extractor.errors import BudgetUnavailableError, InputError
from binance_extractor.gaps.repair import fill_chunk
from binance_extractor.kinds import DataKind, Dataset
from binance_extractor.pipeline import Job, run_job
from binance_extractor.sinks import open_sinks
from binance_extractor.timeutil import dt_to_ms, iso
from tests.binance_extractor.sinks.conftest import klines
from tests.fixtures.databases import free_port

KLINES_M5 = Dataset.of_table("klines_m5")

ROOT = Path(__file__).resolve().parents[2]
# each piece is distinctive, so finding it anywhere in an output means the password leaked
PASSWORDS = ["Zq7@Kx9", "Zq7@Kx9@Wm2@Tr5", "Zq7:Kx9@Wm2", "Zq7%40Kx9", "Zq7/Kx9@Wm2:Tr5%40Vb8"]
DRIVER_READABLE = [p for p in PASSWORDS if "/" not in p]  # a raw "/" ends the netloc for every parser


def pieces(password: str) -> set[str]:
    """The password, decoded, and every piece between its special characters."""
    return {password, unquote(password), *(p for p in re.split(r"%40|[@:/]", password) if p)}


def assert_hidden(password: str, *outputs: str) -> None:
    for text in outputs:
        leaked = sorted(p for p in pieces(password) if p in text)
        assert not leaked, f"{leaked} of the password shown in: {text[:800]}"


@pytest.mark.parametrize("password", PASSWORDS)
@pytest.mark.parametrize(
    "template",
    [
        "redis://:{pw}@cache.internal:6379/0",
        "redis://budget:{pw}@cache.internal:6379/0?ssl_cert_reqs=none",
        "mysql://extractor:{pw}@db.internal:3306/binance",
        "mariadb+mysqldb://extractor:{pw}@db.internal/binance?read_timeout=5",
        "postgresql://extractor:{pw}@db.internal:5432/binance",
        "mongodb://app:{pw}@mongo.internal:27017/binance",
    ],
)
def test_mask_url_hides_the_whole_password_and_keeps_the_rest(template: str, password: str) -> None:
    url = template.format(pw=password)
    masked = masking.mask_url(url)
    assert_hidden(password, masked, masking.mask(f"connecting to {url} failed"))
    assert masked == template.format(pw="***")
    if password in DRIVER_READABLE:  # the standard library reads the masked URL as it reads the original
        got, want = urlsplit(masked), urlsplit(url)
        assert (got.username, got.hostname, got.port, got.path, got.query) == (
            want.username,
            want.hostname,
            want.port,
            want.path,
            want.query,
        )
        assert got.password == "***" and unquote(want.password or "") == unquote(password)


def test_text_without_a_password_is_left_alone() -> None:
    for text in [
        "redis://cache.internal:6379/0",
        "sqlite:///data/budget.sqlite",
        "weight budget store redis://127.0.0.1:9/0 unreachable; mail ops@example.com",
        "GET http://127.0.0.1:8080/fapi/v1/klines?symbol=BTCUSDT&limit=499",
    ]:
        assert masking.mask(text) == text


@pytest.mark.parametrize("password", DRIVER_READABLE)
@pytest.mark.parametrize("scheme", ["mysql", "mariadb", "postgresql"])
def test_sql_budget_urls_never_show_the_password(scheme: str, password: str) -> None:
    """A raw @ is refused at start-up in one line (SQLAlchemy would take the rest of the password for the
    host); an encoded one is read, and the store's error names the URL with the password masked."""
    url = f"{scheme}://extractor:{password}@127.0.0.1:9/binance"
    if "@" in password:
        with pytest.raises(InputError) as refused:
            open_budget_store(url)
        assert "percent-encode" in str(refused.value) and "\n" not in str(refused.value)
        assert_hidden(password, str(refused.value))
        return
    store = open_budget_store(url)
    with pytest.raises(BudgetUnavailableError) as err:
        store.transact("k", lambda st: None)
    assert "127.0.0.1:9/binance unreachable" in str(err.value)
    assert_hidden(password, str(err.value), store.describe())


@pytest.fixture
def budget_url(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> str:
    """A Redis budget store nobody listens on, with the test's password."""
    url = f"redis://:{request.param}@127.0.0.1:{free_port()}/0"
    monkeypatch.setenv("BINANCE_EXTRACTOR_BUDGET_URL", url)
    return str(request.param)


def _span_texts(cap: Any) -> list[str]:
    out = []
    for sp in cap.spans():
        out.append(json.dumps({k: str(v) for k, v in (sp.attributes or {}).items()}))
        out.append(str(sp.status.description))
        out.extend(json.dumps({k: str(v) for k, v in (e.attributes or {}).items()}) for e in sp.events)
    return out


@pytest.mark.parametrize("budget_url", PASSWORDS, indirect=True)
def test_every_output_of_a_failed_run_hides_the_budget_password(
    budget_url: str, sqlite_conn_id: str, emulator: Any, caplog: pytest.LogCaptureFixture
) -> None:
    password = budget_url
    if password not in DRIVER_READABLE:  # refused at start-up, in one line that shows none of it
        with pytest.raises(InputError) as refused:
            BinanceFuturesClient(emulator.url)
        assert "percent-encode" in str(refused.value)
        assert_hidden(password, str(refused.value), caplog.text)
        return
    stored = klines("BTCUSDT", n=20)
    (sink,) = open_sinks(["sqlite"])
    sink.write(KLINES_M5, stored[:5] + stored[10:])  # a hole of five candles for the gap filler
    start, end = stored[0].open_time, stored[-1].open_time + timedelta(minutes=5)
    client = BinanceFuturesClient(emulator.url)
    with telemetry.capture() as cap:
        job = Job(DataKind.KLINES, "BTCUSDT", timeframes.parse("5m"), start=start, end=end, source="rest")
        with pytest.raises(BudgetUnavailableError) as err, telemetry.span("cli.klines"):  # as the CLI runs it
            run_job(job, [sink], client)
        chunk = gaps.Chunk(gaps.gap_dataset("klines_m5"), "BTCUSDT", dt_to_ms(start), dt_to_ms(end), 0, dt_to_ms(end))
        result = fill_chunk(chunk, [sink], client, source="rest")  # what a fill task puts in XCom
        spans = _span_texts(cap)
    client.close()
    audit = [r.error or "" for r in sink.recent_runs(KLINES_M5, "BTCUSDT", 10)]
    sink.close()
    from plugins.data_health import collect, render_page

    rows = collect(1, ["klines_m5"], store=lambda: open_sinks(["sqlite"])[0])
    page = render_page(rows, 1, "", "klines_m5", "BTCUSDT")
    assert "weight budget store redis://" in str(err.value) and result.error and "unreachable" in result.error
    assert len([a for a in audit if "unreachable" in a]) == 2 and "unreachable" in page  # the failures are shown
    assert any("unreachable" in s for s in spans)
    assert_hidden(
        password,
        str(err.value),
        *audit,
        page,
        json.dumps(result.to_dict()),
        *spans,
        caplog.text,
    )


@pytest.mark.parametrize("password", PASSWORDS)
def test_the_cli_hides_the_budget_password_on_stderr_and_in_its_logs(password: str, emulator: Any) -> None:
    env = {
        **os.environ,
        "BINANCE_EXTRACTOR_BUDGET_URL": f"redis://:{password}@127.0.0.1:{free_port()}/0",
        "BINANCE_FUTURES_BASE_URL": emulator.url,
        "BINANCE_LOG_FORMAT": "json",
    }
    argv = ["klines", "--interval", "5m", "--symbols", "BTCUSDT", "--start", iso(klines(n=1)[0].open_time)]
    proc = subprocess.run(
        [sys.executable, "-m", "binance_extractor", *argv, "--source", "rest", "--sink", "jsonl", "--output", "-"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    last = proc.stderr.strip().splitlines()[-1]
    if password in DRIVER_READABLE:
        assert proc.returncode == 1
        assert last.startswith("error: weight budget store redis://:***@127.0.0.1:") and "unreachable" in last
    else:  # bad input: refused before anything runs
        assert proc.returncode == 2
        assert last.startswith("error: BINANCE_EXTRACTOR_BUDGET_URL redis://:***@127.0.0.1:"), last
    assert_hidden(password, proc.stdout, proc.stderr)
