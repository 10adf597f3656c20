"""A filled store of each kind (sqlite, mysql, mongo) for tests that read data back."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from binance_extractor.sinks.base import Sink
from tests.binance_extractor.sinks.conftest import SINK_KINDS, new_sink

__all__ = ["SINK_KINDS", "store", "store_kind"]


@pytest.fixture(params=SINK_KINDS)
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store(store_kind: str, request: pytest.FixtureRequest) -> Iterator[Sink]:
    """An empty store of the parametrized kind on this test's fresh database (schema ensured)."""
    conn_id = request.getfixturevalue(f"{store_kind}_conn_id")
    sink = new_sink(store_kind, conn_id, retry_attempts=2)
    sink.ensure_schema()
    yield sink
    sink.close()
