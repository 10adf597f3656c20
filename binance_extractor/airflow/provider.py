"""Provider metadata for Airflow's ``apache_airflow_provider`` entry point.

Registering the package as a provider is what makes the UI offer a "Binance" connection type with its form
(Base URL, API key) and its Test button; ``airflow providers list`` shows it too. Airflow 3.3 builds the
connection form from this metadata without importing the hook, so the field behaviour lives here (no Airflow
import) and the hook returns the same dict.
"""

from __future__ import annotations

import copy
from typing import Any

from binance_extractor.config import DEFAULT_BASE_URL
from binance_extractor.version import __version__

CONN_TYPE = "binance"
HOOK_NAME = "Binance USD-M Futures"
HOOK_CLASS = "binance_extractor.airflow.hooks.BinanceFuturesHook"
UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden_fields": ["login", "schema", "port", "extra"],
    "relabeling": {"host": "Base URL", "password": "API key"},
    "placeholders": {"host": DEFAULT_BASE_URL, "password": "only for historical trades"},
}


def ui_field_behaviour() -> dict[str, Any]:
    """The hook's ``get_ui_field_behaviour()`` (snake_case keys)."""
    return copy.deepcopy(UI_FIELD_BEHAVIOUR)


def _provider_yaml_behaviour() -> dict[str, Any]:
    """The same, spelled as provider info wants it (``hidden-fields``)."""
    behaviour = ui_field_behaviour()
    return {"hidden-fields": behaviour.pop("hidden_fields"), **behaviour}


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "binance-extractor",
        "name": "Binance Extractor",
        "description": "Binance USD-M Futures market data: the `binance` connection type and its hook.",
        "versions": [__version__],
        "connection-types": [
            {
                "hook-class-name": HOOK_CLASS,
                "connection-type": CONN_TYPE,
                "hook-name": HOOK_NAME,
                "ui-field-behaviour": _provider_yaml_behaviour(),
            },
        ],
    }
