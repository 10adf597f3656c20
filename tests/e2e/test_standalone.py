"""End to end: ``make run``'s script starts ``airflow standalone`` (real scheduler, api-server, dag-processor,
triggerer, LocalExecutor) on a free port against the exchange emulator and a fresh MariaDB database, with a fresh
PostgreSQL metadata DB (several processes write it at once; see ``metadata_db``).

One instance serves the whole module: trigger ``binance_klines_manual`` through REST API v2 with a conf, run
``airflow backfill create`` for ``binance_klines_h1`` over a few hours, check the rows, then stop it with SIGINT
(what Ctrl-C sends) and check that no process is left.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psutil
import pytest
import requests

from binance_extractor.timeutil import dt_to_ms
from tests.emulator import Emulator
from tests.fixtures.databases import MYSQL_HOST, MYSQL_PORT, free_port, mysql_admin

# One Airflow for the whole module: its tests share it, so xdist keeps them on one worker (make test: --dist loadgroup).
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.mysql,
    pytest.mark.timeout(240),
    pytest.mark.xdist_group("airflow-standalone"),
]
ROOT = Path(__file__).resolve().parents[2]
# Screenshots of UI checks (TEST_ARTIFACTS_DIR, default <repo>/test-artifacts, git-ignored).
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS_DIR", ROOT / "test-artifacts"))
SYMBOLS = ["BTCUSDT", "ETHUSDT"]
BACKFILL_FROM = datetime(2024, 2, 1, 0, 0, tzinfo=UTC)
BACKFILL_TO = datetime(2024, 2, 1, 3, 0, tzinfo=UTC)  # inclusive logical dates: 4 hourly runs
MANUAL_CONF = {
    "symbols": [*SYMBOLS, "OLDUSDT"],
    "interval": "1h",
    "start": "2024-01-01T00:00:00Z",
    "end": "2024-01-09T00:00:00Z",
    "sinks": ["mysql"],
}


class Airflow:
    def __init__(self, home: Path, port: int, env: dict[str, str], proc: subprocess.Popen[bytes], log: Path) -> None:
        self.home, self.port, self.env, self.proc, self.log = home, port, env, proc, log
        self.url = f"http://localhost:{port}"
        self.session = requests.Session()

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_healthy(self, timeout: float = 150) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"run-airflow.sh exited:\n{self.output()[-3000:]}"
            try:
                health = requests.get(f"{self.url}/api/v2/monitor/health", timeout=2).json()
                if all(health.get(k, {}).get("status") == "healthy" for k in ("metadatabase", "scheduler")):
                    return
            except (requests.RequestException, ValueError):
                pass
            time.sleep(0.5)
        raise AssertionError(f"not healthy after {timeout}s:\n{self.output()[-3000:]}")

    def login(self) -> None:
        passwords = json.loads((self.home / "simple_auth_manager_passwords.json.generated").read_text())
        resp = requests.post(
            f"{self.url}/auth/token", json={"username": "admin", "password": passwords["admin"]}, timeout=10
        )
        resp.raise_for_status()
        self.session.headers["Authorization"] = f"Bearer {resp.json()['access_token']}"

    def api(self, method: str, path: str, **kw):  # type: ignore[no-untyped-def]
        resp = self.session.request(method, f"{self.url}/api/v2{path}", timeout=15, **kw)
        assert resp.status_code < 300, f"{method} {path}: {resp.status_code} {resp.text[:500]}"
        return resp.json()

    def wait_dag(self, dag_id: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.session.get(f"{self.url}/api/v2/dags/{dag_id}", timeout=5).status_code == 200:
                return
            time.sleep(0.5)
        raise AssertionError(f"{dag_id} never parsed")

    def wait_runs(self, dag_id: str, run_ids: set[str], timeout: float = 100) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            runs = self.api("GET", f"/dags/{dag_id}/dagRuns", params={"limit": 100})["dag_runs"]
            states = {r["dag_run_id"]: r["state"] for r in runs if r["dag_run_id"] in run_ids}
            if len(states) == len(run_ids) and all(s in ("success", "failed") for s in states.values()):
                return states
            time.sleep(1)
        raise AssertionError(f"{dag_id} runs not finished after {timeout}s: {states}")

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(ROOT / "scripts/airflow.sh"), *args], env=self.env, capture_output=True, text=True, timeout=120
        )


def _clean_env() -> dict[str, str]:
    """The user's environment without the test session's Airflow settings (the script sets its own)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW") and not k.startswith("BINANCE_")}


@pytest.fixture(scope="module")
def database():
    name = f"bx_e2e_{uuid.uuid4().hex[:8]}"
    admin = mysql_admin()
    admin.cursor().execute(f"CREATE DATABASE `{name}`")
    yield name
    admin.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")
    admin.close()


@pytest.fixture(scope="module")
def metadata_db():
    """A fresh PostgreSQL metadata DB: the scheduler, api-server, tasks and the backfill CLI all write at once,
    and on SQLite (``make run``'s default) a CLI write racing the scheduler can fail with "database is locked"."""
    import psycopg2

    name = f"bx_airflow_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"
    admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


@pytest.fixture(scope="module")
def emu():
    with Emulator() as e:
        yield e


@pytest.fixture(scope="module")
def airflow(tmp_path_factory, emu, database, metadata_db):
    home = tmp_path_factory.mktemp("airflow-e2e")
    port = free_port()
    env = {
        **_clean_env(),
        "RUN_AIRFLOW_HOME": str(home / "airflow_home"),
        "AIRFLOW_PORT": str(port),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_db,
        # the scheduled DAGs stay paused: the test unpauses only what it runs (2 cores)
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "BINANCE_FUTURES_BASE_URL": emu.url,
        "BINANCE_ARCHIVE_BASE_URL": emu.archive_url,
        "BINANCE_SYMBOLS": ",".join(SYMBOLS),
        "BINANCE_EXTRACTOR_SINKS": "mysql",
        "BINANCE_EXTRACTOR_DATA_DIR": str(home / "data"),
        "BINANCE_EXTRACTOR_HISTORY_DAYS": "1",
        "AIRFLOW_CONN_MYSQL_DEFAULT": f"mysql://root@{MYSQL_HOST}:{MYSQL_PORT}/{database}",
    }
    log = home / "run-airflow.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["bash", str(ROOT / "scripts/run-airflow.sh")],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # like a terminal's foreground job: Ctrl-C reaches this group only
        )
    af = Airflow(Path(env["RUN_AIRFLOW_HOME"]), port, env, proc, log)  # CLI: scripts/airflow.sh, same env
    try:
        af.wait_healthy()
        af.login()
        yield af
    finally:
        if proc.poll() is None:  # the stop test did not run or failed: kill everything it started
            tree = psutil.Process(proc.pid).children(recursive=True)
            os.killpg(proc.pid, signal.SIGKILL)
            for p in tree:
                with contextlib.suppress(psutil.Error):
                    p.kill()
            proc.wait(10)


def stored_h1(database: str, symbol: str, start: datetime, end: datetime) -> list[tuple]:
    import MySQLdb

    conn = MySQLdb.connect(host=MYSQL_HOST, port=MYSQL_PORT, user="root", passwd="", db=database)
    try:
        cur = conn.cursor()
        cur.execute(
            "SELECT open_time, open, high, low, close, volume FROM klines_h1"
            " WHERE symbol=%s AND open_time >= %s AND open_time < %s ORDER BY open_time",
            (symbol, start.replace(tzinfo=None), end.replace(tzinfo=None)),
        )
        return [(dt_to_ms(r[0].replace(tzinfo=UTC)), *r[1:]) for r in cur.fetchall()]
    finally:
        conn.close()


def served_h1(emu: Emulator, symbol: str, start: datetime, end: datetime) -> list[tuple]:
    rows = emu.klines_rows(symbol, "1h", dt_to_ms(start), dt_to_ms(end) - 1)
    return [(r[0], *(Decimal(x) for x in r[1:6])) for r in rows]


def test_make_run_prints_where_to_go(airflow):
    deadline = time.monotonic() + 60
    while "Ctrl-C stops" not in airflow.output() and time.monotonic() < deadline:
        time.sleep(0.5)  # the banner comes once the script has seen the health endpoint and created the pool
    out = airflow.output()
    assert f"Airflow UI:      http://localhost:{airflow.port}" in out
    assert f"Password in:     {airflow.home}/simple_auth_manager_passwords.json.generated" in out
    pools = airflow.api("GET", "/pools/binance_api")
    assert pools["slots"] == 4


def test_setup_airflow_and_the_binance_provider(airflow, emu):
    """`make run` ran setup-airflow: the Variable and the binance_default connection exist; the provider is listed
    and the connection's Test (ping + exchangeInfo) succeeds against the exchange."""
    variable = airflow.api("GET", "/variables/binance_symbols")
    assert json.loads(variable["value"]) == SYMBOLS
    conn = airflow.api("GET", "/connections/binance_default")
    assert (conn["conn_type"], conn["host"]) == ("binance", emu.url)
    out = airflow.cli("providers", "list", "-o", "json")
    assert out.returncode == 0, out.stderr
    assert "binance-extractor" in {p["package_name"] for p in json.loads(out.stdout)}
    body = {"connection_id": "binance_default", "conn_type": "binance", "host": emu.url}
    emu.reset_stats()
    tested = airflow.api("POST", "/connections/test", json=body)
    assert tested["status"] is True and tested["message"].startswith(f"reached {emu.url}: ")
    assert emu.count("/fapi/v1/ping") == 1 and emu.count("/fapi/v1/exchangeInfo") == 1


def test_ui_connection_form_offers_the_binance_type(airflow, emu):
    """A real headless Chromium: the Add Connection form lists "Binance USD-M Futures" and relabels its fields."""
    from playwright.sync_api import sync_playwright

    passwords = json.loads((airflow.home / "simple_auth_manager_passwords.json.generated").read_text())
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "ui-connection-form-binance.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{airflow.url}/")
            page.fill("input[name=username]", "admin")
            page.fill("input[name=password]", passwords["admin"])
            page.keyboard.press("Enter")
            # The login page navigates to "/" once the token is set; on a busy machine that can start after the
            # page went idle, and would then interrupt the next goto. Wait for that navigation itself.
            page.wait_for_url(lambda url: "login" not in url, wait_until="load", timeout=120_000)
            page.wait_for_load_state("networkidle")
            page.goto(f"{airflow.url}/connections")
            page.get_by_role("button", name="Add Connection").click()
            dialog = page.get_by_role("dialog")
            dialog.get_by_role("combobox").first.click()
            page.keyboard.type("Binance")
            page.get_by_role("option", name="Binance USD-M Futures").click()
            dialog.get_by_text("Base URL", exact=True).wait_for()
            text = dialog.inner_text()
            assert "API key" in text
            for hidden in ("Login", "Schema", "Port"):
                assert hidden not in text.splitlines(), f"{hidden} should be hidden for the Binance type"
            assert dialog.locator("input[name=host]").get_attribute("placeholder") == "https://fapi.binance.com"
            dialog.locator("input[name=connection_id]").fill("binance_ui_check")
            dialog.locator("input[name=host]").fill(emu.url)
            page.screenshot(path=str(shot))
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000


def test_manual_trigger_and_backfill_reach_success_with_the_right_rows(airflow, emu, database):
    for dag_id in ("binance_klines_manual", "binance_klines_h1"):
        airflow.wait_dag(dag_id)
        airflow.api("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
    manual = airflow.api(
        "POST", "/dags/binance_klines_manual/dagRuns", json={"logical_date": None, "conf": MANUAL_CONF}
    )
    backfill = airflow.cli(
        "backfill",
        "create",
        "--dag-id",
        "binance_klines_h1",
        "--from-date",
        BACKFILL_FROM.isoformat(),
        "--to-date",
        BACKFILL_TO.isoformat(),
    )
    assert backfill.returncode == 0, backfill.stderr[-2000:]

    assert airflow.wait_runs("binance_klines_manual", {manual["dag_run_id"]}) == {manual["dag_run_id"]: "success"}
    start, end = datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 9, tzinfo=UTC)
    for sym in SYMBOLS:
        expected = served_h1(emu, sym, start, end)
        assert len(expected) == 8 * 24 and stored_h1(database, sym, start, end) == expected
    tis = airflow.api("GET", f"/dags/binance_klines_manual/dagRuns/{manual['dag_run_id']}/taskInstances")
    labels = sorted(t["rendered_map_index"] for t in tis["task_instances"] if t["task_id"] == "extract")
    assert labels == [f"{s} 2024-01-0{d}T00:00..2024-01-0{d2}T00:00" for s in SYMBOLS for d, d2 in ((1, 8), (8, 9))]

    runs = airflow.api("GET", "/dags/binance_klines_h1/dagRuns", params={"run_type": "backfill", "limit": 100})
    backfill_runs = {r["dag_run_id"] for r in runs["dag_runs"] if r["run_type"] == "backfill"}
    assert len(backfill_runs) == 4
    assert set(airflow.wait_runs("binance_klines_h1", backfill_runs).values()) == {"success"}
    lo, hi = BACKFILL_FROM, BACKFILL_TO + timedelta(hours=1)
    for sym in SYMBOLS:
        # exactly the backfilled intervals: nothing before or after them in that day
        day = stored_h1(database, sym, lo - timedelta(hours=6), hi + timedelta(hours=6))
        assert day == served_h1(emu, sym, lo, hi) and len(day) == 4


ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]


def test_data_health_page_in_a_real_browser(airflow, emu, database):
    """Headless Chromium: log in, open the page from the UI navigation, see the stored symbols, cut a hole into
    MySQL and see it on the page; the screenshot is kept under test-artifacts/."""
    import sys

    import MySQLdb
    from playwright.sync_api import sync_playwright

    # The window's candles, whatever ran before (the manual DAG stores the same rows: upserts): the test stands alone.
    env = {
        **os.environ,
        "BINANCE_FUTURES_BASE_URL": emu.url,
        "AIRFLOW_CONN_MYSQL_DEFAULT": f"mysql://root@{MYSQL_HOST}:{MYSQL_PORT}/{database}",
    }
    argv = ["klines", "--interval", "1h", "--symbols", ",".join(SYMBOLS), "--source", "rest", "--sink", "mysql"]
    argv += ["--start", MANUAL_CONF["start"], "--end", MANUAL_CONF["end"]]
    filled = subprocess.run(
        [sys.executable, "-m", "binance_extractor", *argv], env=env, capture_output=True, text=True, timeout=240
    )
    assert filled.returncode == 0, filled.stderr[-2000:]

    passwords = json.loads((airflow.home / "simple_auth_manager_passwords.json.generated").read_text())
    window = "start=2024-01-01T00:00:00Z&end=2024-01-09T00:00:00Z"
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(f"{airflow.url}/", wait_until="networkidle")
            page.fill("input[name=username]", "admin")
            page.fill("input[name=password]", passwords["admin"])
            page.keyboard.press("Enter")
            page.wait_for_url(lambda u: "/login" not in u, timeout=30_000)

            page.get_by_role("button", name="Browse").click()  # the nav entry, as a user reaches it
            page.get_by_role("menuitem", name="Data health").click()
            page.wait_for_url("**/plugin/data-health", timeout=30_000)
            frame = page.frame_locator("iframe").first
            for sym in SYMBOLS:
                frame.locator(f'tr[data-table="klines_h1"][data-symbol="{sym}"]').wait_for(timeout=30_000)
            page.screenshot(path=str(ARTIFACTS / "data-health-in-airflow-ui.png"), full_page=True)

            page.goto(f"{airflow.url}/data-health/?{window}&chart=klines_h1|BTCUSDT", wait_until="networkidle")
            row = page.locator('tr[data-table="klines_h1"][data-symbol="BTCUSDT"]')
            assert row.locator("td").nth(6).inner_text() == "192 / 192"
            assert row.locator(".hole").count() == 0
            assert page.locator("svg#chart polyline").count() == 1
            assert "… 2024-01-08T23:00:00.000Z" in page.locator("#chart-section").inner_text()  # the window's end

            conn = MySQLdb.connect(host=MYSQL_HOST, port=MYSQL_PORT, user="root", passwd="", db=database)
            try:
                cur = conn.cursor()
                cur.execute(
                    "DELETE FROM klines_h1 WHERE symbol = 'BTCUSDT'"
                    " AND open_time >= '2024-01-03 10:00:00' AND open_time < '2024-01-03 13:00:00'"
                )
                conn.commit()
                assert cur.rowcount == 3
            finally:
                conn.close()
            page.reload(wait_until="networkidle")
            row = page.locator('tr[data-table="klines_h1"][data-symbol="BTCUSDT"]')
            assert row.locator(".hole").inner_text() == (
                "2024-01-03T10:00:00.000Z → 2024-01-03T13:00:00.000Z (3 missing)"
            )
            assert row.locator("td").nth(6).inner_text() == "189 / 192"
            eth = page.locator('tr[data-table="klines_h1"][data-symbol="ETHUSDT"]')
            assert eth.locator(".hole").count() == 0
            shot = ARTIFACTS / "data-health.png"
            page.screenshot(path=str(shot), full_page=True)
            print(f"data-health screenshot: {shot}")
        finally:
            browser.close()


def test_ctrl_c_stops_every_process(airflow):
    script = psutil.Process(airflow.proc.pid)
    tree = [script, *script.children(recursive=True)]
    assert any("standalone" in " ".join(p.cmdline()) for p in tree if p.is_running())
    os.killpg(airflow.proc.pid, signal.SIGINT)  # a terminal's Ctrl-C: the foreground process group
    assert airflow.proc.wait(60) == 0
    time.sleep(0.5)
    alive = [p for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert alive == [], [p.cmdline() for p in alive]
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{airflow.url}/api/v2/monitor/health", timeout=2)
    assert "run-airflow: stopped" in airflow.output()
