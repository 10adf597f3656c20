"""The data-health plugin inside Airflow's real API server app: Airflow authentication, the page, the JSON API.

The app is Airflow's own (``create_app``, plugins loaded by the plugins manager from plugins/); tokens are real
JWTs issued by the configured auth manager, and the page reads a real SQLite store through the library.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from binance_extractor.kinds import Dataset
from binance_extractor.timeutil import iso
from tests.binance_extractor.sinks.conftest import agg_trades, funding, klines, trades

AGG_TRADES = Dataset.of_table("agg_trades")
FUNDING_RATES = Dataset.of_table("funding_rates")
KLINES_M5 = Dataset.of_table("klines_m5")
TRADES = Dataset.of_table("trades")

START = "2023-12-30T00:00:00Z"


@pytest.fixture(scope="module")
def store_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Any]]:
    """A SQLite store with XRPUSDT (a 5-candle hole cut) and BTCUSDT m5 candles, set as the configured store."""
    from urllib.parse import quote

    from binance_extractor.sinks.sqlite import SqliteStore

    path = tmp_path_factory.mktemp("health") / "store.sqlite"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRFLOW_CONN_SQLITE_DEFAULT", "sqlite://" + quote(str(path), safe=""))
        mp.setenv("BINANCE_EXTRACTOR_SINKS", "sqlite")
        rows = klines("XRPUSDT", n=120)
        with SqliteStore("sqlite_default") as sink:
            sink.write(KLINES_M5, rows[:40] + rows[45:])
            sink.write(KLINES_M5, klines("BTCUSDT", n=120))
            sink.write(FUNDING_RATES, funding())
            sink.write(AGG_TRADES, agg_trades(n=50))
            sink.write(TRADES, trades(n=50))
        yield rows


@pytest.fixture(scope="module")
def client(airflow_db: None, store_env: list[Any]) -> Any:
    from airflow.api_fastapi.app import create_app
    from fastapi.testclient import TestClient

    return TestClient(create_app())


def token(role: str = "admin") -> str:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return get_auth_manager().generate_jwt(SimpleAuthManagerUser(username=role, role=role))


def row(page: str, table: str, symbol: str) -> str:
    return page.split(f'data-table="{table}" data-symbol="{symbol}"', 1)[1].split("</tr>", 1)[0]


def window(rows: list[Any]) -> dict[str, str]:
    return {"start": iso(rows[0].open_time), "end": iso(rows[-1].open_time + timedelta(minutes=5))}


def test_plugin_registers_a_nav_entry(client: Any) -> None:
    plugins = client.get("/api/v2/plugins", headers={"Authorization": f"Bearer {token()}"}).json()["plugins"]
    views = [v for p in plugins for v in p["external_views"]]
    assert {
        "name": "Data health",
        "href": "data-health/",
        "destination": "nav",
        "url_route": "data-health",
    }.items() <= (next(v for v in views if v["name"] == "Data health").items())


@pytest.mark.parametrize("path", ["/data-health/", "/data-health/api/health", "/data-health/api/chart"])
def test_every_route_needs_an_airflow_user(client: Any, path: str) -> None:
    assert client.get(path).status_code == 401
    assert client.get(path, headers={"Authorization": "Bearer not-a-jwt"}).status_code == 403


def test_page_with_the_ui_cookie_shows_symbols_hole_and_chart(client: Any, store_env: list[Any]) -> None:
    rows = store_env
    resp = client.get("/data-health/", params=window(rows), cookies={"_token": token()})
    assert resp.status_code == 200
    page = resp.text
    assert 'data-symbol="XRPUSDT"' in page and 'data-symbol="BTCUSDT"' in page
    for table, symbol in (("funding_rates", "XRPUSDT"), ("agg_trades", "XRPETH"), ("trades", "XRPETH")):
        assert f'data-table="{table}" data-symbol="{symbol}"' in page
    assert f"{iso(rows[40].open_time)} → {iso(rows[45].open_time)} (5 missing)" in page
    assert "115 / 120" in page and "95.83%" in page
    assert '<svg id="chart"' in page and "<script" not in page and "http" not in page.split("<body>")[1]


def test_json_api_with_a_bearer_token(client: Any, store_env: list[Any]) -> None:
    rows = store_env
    auth = {"Authorization": f"Bearer {token()}"}
    data = client.get("/data-health/api/health", params={**window(rows), "table": "klines_m5"}, headers=auth).json()
    xrp = next(d for d in data if d["symbol"] == "XRPUSDT")
    assert (xrp["rows"], xrp["stored"], xrp["expected"], xrp["missing"]) == (115, 115, 120, 5)
    assert xrp["first"] == iso(rows[0].open_time) and xrp["last"] == iso(rows[-1].open_time)
    pts = client.get("/data-health/api/chart", params={"table": "m5", "symbol": "btcusdt", "points": 10}, headers=auth)
    assert [p["t"] for p in pts.json()] == [iso(r.open_time) for r in klines("BTCUSDT", n=120)[-10:]]
    bad = client.get("/data-health/api/health", params={"start": "2024-13-01"}, headers=auth)
    assert bad.status_code == 400 and "malformed date" in bad.json()["detail"]


def test_freshness_against_a_pinned_clock(client: Any, store_env: list[Any]) -> None:
    from binance_extractor import clock
    from binance_extractor.timeutil import dt_to_ms

    last_close = dt_to_ms(store_env[-1].close_time)
    auth = {"Authorization": f"Bearer {token()}"}
    with clock.using(clock.FixedClock(last_close + 1)):
        fresh = client.get("/data-health/api/health", params={"table": "m5", "window": 1}, headers=auth).json()
        page = client.get("/data-health/", params={"window": 1}, headers=auth).text
    assert {(d["symbol"], d["lag_s"], d["stale"]) for d in fresh} >= {("XRPUSDT", 0, False)}
    assert "up to date" in row(page, "klines_m5", "XRPUSDT") and "(late)" not in row(page, "klines_m5", "XRPUSDT")
    with clock.using(clock.FixedClock(last_close + 1 + 2 * 3_600_000)):
        late = client.get("/data-health/api/health", params={"table": "m5", "window": 1}, headers=auth).json()
        page = client.get("/data-health/", params={"window": 1}, headers=auth).text
    xrp = next(d for d in late if d["symbol"] == "XRPUSDT")
    assert (xrp["lag_s"], xrp["stale"]) == (2 * 3600, True)
    assert "2h behind (late)" in row(page, "klines_m5", "XRPUSDT")


def test_each_kpi_against_its_target(client: Any, store_env: list[Any]) -> None:
    """Completeness (XRPUSDT's 5-candle hole keeps it under 99.95 %), freshness (met when every closed candle is
    stored, missed two hours later), job success (no runs recorded in this store: nothing to judge)."""
    from binance_extractor import clock
    from binance_extractor.timeutil import dt_to_ms

    auth = {"Authorization": f"Bearer {token()}"}
    last_close = dt_to_ms(store_env[-1].close_time)
    with clock.using(clock.FixedClock(last_close + 1)):
        health = client.get("/data-health/api/health", params=window(store_env), headers=auth).json()
        kpis = {
            k["name"]: k for k in client.get("/data-health/api/kpis", params=window(store_env), headers=auth).json()
        }
        page = client.get("/data-health/", params=window(store_env), headers=auth).text
    completeness = kpis["completeness"]
    assert completeness["target"] == 0.9995 and completeness["met"] is False
    judged = [h for h in health if h["expected"]]  # every table of the page, not only klines
    expected = sum(h["expected"] for h in judged)
    assert completeness["value"] == sum(min(h["stored"], h["expected"]) for h in judged) / expected < 0.9995
    assert "worst klines_m5 XRPUSDT 115 / 120" in completeness["detail"]
    assert (kpis["freshness"]["value"], kpis["freshness"]["target"], kpis["freshness"]["met"]) == (0, 300, True)
    assert (kpis["job success"]["value"], kpis["job success"]["met"]) == (None, None)
    table = page.split('<table id="kpis">', 1)[1].split("</table>", 1)[0]
    assert 'data-kpi="completeness"' in table and "at least 99.95 %" in table and "missed" in table
    assert "under 5 min" in table and ">met<" in table
    with clock.using(clock.FixedClock(last_close + 1 + 2 * 3_600_000)):
        late = {
            k["name"]: k for k in client.get("/data-health/api/kpis", params=window(store_env), headers=auth).json()
        }
    assert (late["freshness"]["value"], late["freshness"]["met"]) == (2 * 3600 - 300, False)
