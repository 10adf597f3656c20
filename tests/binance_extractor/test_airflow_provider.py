"""The provider entry point: valid provider info, and Airflow's providers manager turns it into the form."""

from __future__ import annotations

import json
from importlib.metadata import entry_points
from pathlib import Path

import jsonschema

from binance_extractor.airflow import provider
from binance_extractor.airflow.hooks import BinanceFuturesHook


def test_entry_point_returns_schema_valid_provider_info():
    (ep,) = [e for e in entry_points(group="apache_airflow_provider") if e.value.startswith("binance_extractor.")]
    info = ep.load()()
    import airflow

    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    jsonschema.validate(info, schema)
    (conn,) = info["connection-types"]
    assert (conn["connection-type"], conn["hook-class-name"]) == (
        "binance",
        "binance_extractor.airflow.hooks.BinanceFuturesHook",
    )
    assert conn["hook-name"] == BinanceFuturesHook.hook_name and BinanceFuturesHook.conn_type == provider.CONN_TYPE


def test_providers_manager_builds_the_binance_form():
    from airflow.providers_manager import ProvidersManager

    pm = ProvidersManager()
    assert "binance-extractor" in pm.providers
    meta = {m.connection_type: m for m in pm.iter_connection_type_hook_ui_metadata()}["binance"]
    assert meta.hook_name == "Binance USD-M Futures"
    behaviour = meta.field_behaviour
    assert behaviour is not None
    assert behaviour["relabeling"] == {"host": "Base URL", "password": "API key"}
    assert set(behaviour["hidden_fields"]) == {"login", "schema", "port", "extra"}
    # The hook answers the same when Airflow imports it.
    assert BinanceFuturesHook.get_ui_field_behaviour() == provider.ui_field_behaviour()


def test_airflow_connections_test_reaches_the_exchange(emulator, tmp_path):
    """docs/DEPLOY.md step 6: `airflow connections test binance_default` with the connection from the environment."""
    import os
    import subprocess
    import sys

    env = dict(os.environ)
    env["AIRFLOW_CONN_BINANCE_DEFAULT"] = json.dumps({"conn_type": "binance", "host": emulator.url})
    env["AIRFLOW__CORE__TEST_CONNECTION"] = "Enabled"
    airflow = str(Path(sys.executable).parent / "airflow")
    out = subprocess.run(
        [airflow, "connections", "test", "binance_default"], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Connection success!" in out.stdout
    assert emulator.count("/fapi/v1/ping") == 1 and emulator.count("/fapi/v1/exchangeInfo") == 1
