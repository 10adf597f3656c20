"""Airflow hook supplying the Binance client's settings from the ``binance_default`` connection.

Provider pattern: inside Airflow the connection (metadata DB, secrets backend or ``AIRFLOW_CONN_BINANCE_DEFAULT``)
holds the base URL (host) and API key (password); outside Airflow, or when no such connection exists, the
environment (``BINANCE_FUTURES_BASE_URL``, ``BINANCE_API_KEY``) does.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk import BaseHook

from binance_extractor import config, logs
from binance_extractor.client import BinanceFuturesClient

log = logging.getLogger(__name__)


class BinanceFuturesHook(BaseHook):
    conn_name_attr = "binance_conn_id"
    default_conn_name = "binance_default"
    conn_type = "binance"  # = provider.CONN_TYPE
    hook_name = "Binance USD-M Futures"  # = provider.HOOK_NAME

    def __init__(self, binance_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.binance_conn_id = binance_conn_id

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """The connection form (also declared in the provider info, which Airflow's UI reads without this class)."""
        from binance_extractor.airflow import provider

        return provider.ui_field_behaviour()

    def settings(self) -> tuple[str, str | None]:
        """(base_url, api_key) from the connection, falling back to the environment."""
        try:
            conn = self.get_connection(self.binance_conn_id)
        except Exception as exc:  # not defined anywhere: the environment decides
            log.debug("connection %s not found (%s): using the environment", self.binance_conn_id, type(exc).__name__)
            return config.base_url(), config.api_key()
        host = (conn.host or "").strip()
        if not host:
            base = config.base_url()
        elif "://" in host:
            base = host
        else:
            scheme = "http" if (conn.schema or "").lower() == "http" else "https"
            base = f"{scheme}://{host}" + (f":{conn.port}" if conn.port else "")
        return base.rstrip("/"), (conn.password or config.api_key())

    def get_client(self, **kwargs: Any) -> BinanceFuturesClient:
        """The client built from the connection's base URL and key, so its weight budget is that host's."""
        base, key = self.settings()
        logs.register_secret(key)
        return BinanceFuturesClient.from_env(base, key, **kwargs)

    def test_connection(self) -> tuple[bool, str]:
        """The UI's Test button: ping, then exchangeInfo (proves the base URL serves USD-M Futures)."""
        client = self.get_client(max_attempts=1)
        try:
            client.request("/fapi/v1/ping")
            info = client.exchange_info()  # the one the weight budget already read for its limit, if it did
            symbols = info.get("symbols") if isinstance(info, dict) else None
            if not symbols:
                return False, f"{client.base_url} answered ping but exchangeInfo lists no symbols"
            return True, f"reached {client.base_url}: {len(symbols)} symbols"
        except Exception as exc:
            return False, str(exc)
        finally:
            client.close()
