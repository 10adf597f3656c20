"""BinanceFuturesHook: the connection supplies base URL and key inside Airflow; the environment outside it."""

from __future__ import annotations

import json

from binance_extractor.hooks import BinanceFuturesHook


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
    assert hook.test_connection() == (True, f"reached {emulator.url}")


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
