"""BinanceFuturesHook: the connection supplies base URL and key inside Airflow; the environment outside it."""

from __future__ import annotations

import json
from pathlib import Path

from binance_extractor import cli
from binance_extractor.airflow import dagfactory
from binance_extractor.airflow.hooks import BinanceFuturesHook
from binance_extractor.airflow.jobspecs import Output
from binance_extractor.budget import budget_key

FIXTURES = Path("/work/shared/fixtures/binance-real")


def test_connection_supplies_base_url_and_key(emulator, monkeypatch):
    monkeypatch.setenv("BINANCE_FUTURES_BASE_URL", "http://127.0.0.1:9")  # would fail if used
    monkeypatch.delenv("BINANCE_API_KEY")
    conn = {"conn_type": "binance", "host": emulator.url, "password": "test-key"}
    monkeypatch.setenv("AIRFLOW_CONN_BINANCE_DEFAULT", json.dumps(conn))
    hook = BinanceFuturesHook()
    client = hook.get_client()
    assert client.base_url == emulator.url
    trades = client.historical_trades("XRPETH", limit=5)  # needs the key from the connection's password
    assert len(trades) == 5
    assert emulator.requests[-1].api_key_present
    ok, message = hook.test_connection()
    assert ok and message.startswith(f"reached {emulator.url}: ") and message.endswith(" symbols")
    assert [r.path for r in emulator.requests[-2:]] == ["/fapi/v1/ping", "/fapi/v1/exchangeInfo"]


def test_the_weight_budget_is_keyed_on_the_connections_host(emulator, monkeypatch):
    """The client is built from the connection, so its weight budget belongs to the connection's exchange host,
    not to the environment's (two hosts never share, nor split, one IP budget by accident)."""
    monkeypatch.setenv("BINANCE_FUTURES_BASE_URL", "http://127.0.0.1:9")  # the environment names another host
    conn = {"conn_type": "binance", "host": emulator.url, "password": "test-key"}
    monkeypatch.setenv("AIRFLOW_CONN_BINANCE_DEFAULT", json.dumps(conn))
    client = BinanceFuturesHook().get_client()
    try:
        assert client.limiter.key == budget_key(emulator.url) != budget_key("http://127.0.0.1:9")
        assert client.server_time() > 0  # and the budget it draws on is that host's
    finally:
        client.close()


def test_host_without_scheme_and_environment_fallback(emulator, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_BINANCE_OTHER", json.dumps({"conn_type": "binance", "host": "fapi.example"}))
    assert BinanceFuturesHook("binance_other").settings()[0] == "https://fapi.example"
    # no such connection anywhere: the environment decides (the emulator fixture set it)
    assert BinanceFuturesHook("binance_missing").settings() == (emulator.url, "test-key")


def test_recent_trades_and_premium_index(emulator):
    client = BinanceFuturesHook("binance_missing").get_client()
    recent = client.trades("XRPETH", limit=10)
    assert len(recent) == 10 and all(t["id"] > 2**32 for t in recent)
    premium = client.premium_index("BTCUSDT")
    assert premium["symbol"] == "BTCUSDT" and "." in premium["markPrice"]


def test_connection_test_fails_cleanly_on_a_dead_endpoint(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_BINANCE_DEAD", json.dumps({"conn_type": "binance", "host": "http://127.0.0.1:9"}))
    ok, message = BinanceFuturesHook("binance_dead").test_connection()
    assert not ok and message


def test_key_on_the_connection_reaches_historical_trades_through_the_dag_argv(make_emulator, monkeypatch, tmp_path):
    """The argv the DAGs build names binance_default; the key lives only on that connection, not in the env."""
    emulator = make_emulator(api_keys={"conn-only-key"})
    monkeypatch.setenv("BINANCE_FUTURES_BASE_URL", "http://127.0.0.1:9")  # would fail if the env were used
    monkeypatch.delenv("BINANCE_API_KEY")
    conn = {"conn_type": "binance", "host": emulator.url, "password": "conn-only-key"}
    monkeypatch.setenv("AIRFLOW_CONN_BINANCE_DEFAULT", json.dumps(conn))
    first = json.loads((FIXTURES / "XRPETH-trades.json").read_text())[0][0]
    tail = Output.of(["jsonl"], None, "test").to_argv()
    assert tail[-4:-2] == ["--binance-conn-id", "binance_default"]
    out = tmp_path / "trades.jsonl"
    argv = ["trades", "--kind", "historical", "--symbols", "XRPETH", "--start", str(first), "--end"]
    argv += [str(first + 60_000), *tail, "--output", str(out)]
    (result,) = cli.execute(argv)
    assert result.rows_written > 0 and len(out.read_text().splitlines()) == result.rows_written
    historical = [r for r in emulator.requests if r.path == "/fapi/v1/historicalTrades"]
    assert historical and all(r.api_key_present and r.status == 200 for r in historical)
    # The DAGs' symbol check (resolve_symbols) goes through the same connection.
    valid, invalid = dagfactory._validator()(["XRPETH", "NOPEUSDT"])
    assert valid == ["XRPETH"] and "NOPEUSDT" in invalid
