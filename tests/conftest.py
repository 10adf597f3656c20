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


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Make ``--dist loadgroup`` group again: pytest-xdist 3.8.0 tags a grouped test by rewriting ``item._nodeid``,
    which pytest 9.2 (structured ``item._id``) ignores, so every ``xdist_group`` was silently spread over both
    workers (two ``airflow standalone`` per e2e module on 2 cores; pytest-dev/pytest-xdist#1386). Does nothing
    when xdist's own suffix took effect or outside a loadgroup worker. Remove with a pytest-xdist that fixes it."""
    if not (hasattr(config, "workerinput") and getattr(config.option, "loadgroup", False)):
        return
    from _pytest.nodeid import NodeId

    for item in items:
        groups = {
            str(m.args[0] if m.args else m.kwargs.get("name", "default")) for m in item.iter_markers("xdist_group")
        }
        if groups and "@" not in item.nodeid.rpartition("]")[2] and hasattr(item, "_id"):
            item._id = NodeId.parse(f"{item.nodeid}@{'_'.join(sorted(groups))}")
