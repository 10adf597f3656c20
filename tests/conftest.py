"""Suite-wide setup: an isolated Airflow home and data dir, set before anything imports Airflow.

Shared fixtures live in ``tests/fixtures/`` (clock, emulator, databases, airflow) and are loaded as plugins.
Tests never read the wall clock for "now": ``frozen_clock`` (tests/fixtures/clock.py) pins the library and the
emulator together, ``@at_instants`` runs a test at every instant where time-dependent code could break.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_HOME = Path(tempfile.mkdtemp(prefix="binance-tests-"))

os.environ["AIRFLOW_HOME"] = str(_HOME / "airflow")
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(ROOT / "plugins")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_HOME / 'airflow' / 'airflow.db'}"
os.environ["BINANCE_EXTRACTOR_DATA_DIR"] = str(_HOME / "data")
os.environ.setdefault("BINANCE_FUTURES_BASE_URL", "http://127.0.0.1:9")  # never the real exchange
os.environ.setdefault("BINANCE_ARCHIVE_BASE_URL", "http://127.0.0.1:9")
os.environ.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
(_HOME / "airflow").mkdir(parents=True, exist_ok=True)

pytest_plugins = [
    "tests.fixtures.clock",
    "tests.fixtures.emulator",
    "tests.fixtures.databases",
    "tests.fixtures.airflow",
]


@pytest.fixture(autouse=True)
def _own_weight_budget(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    """Each test gets its own shared weight budget (a ban or 429 pause seen by one test never stops another)."""
    monkeypatch.setenv("BINANCE_EXTRACTOR_BUDGET_NAME", f"test-{uuid.uuid4().hex[:12]}")
