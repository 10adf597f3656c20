"""Provider metadata for Airflow's ``apache_airflow_provider`` entry point.

Registering the package as a provider is what makes the UI offer a "Binance" connection type with the hook's
form (Base URL, API key) and its Test button; ``airflow providers list`` shows it too.
"""

from __future__ import annotations

from typing import Any

from binance_extractor import __version__


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "binance-extractor",
        "name": "Binance Extractor",
        "description": "Binance USD-M Futures market data: the `binance` connection type and its hook.",
        "versions": [__version__],
        "connection-types": [
            {"hook-class-name": "binance_extractor.hooks.BinanceFuturesHook", "connection-type": "binance"},
        ],
    }
