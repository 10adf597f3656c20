"""A few seeds of the deterministic simulation in ``make test`` (``make soak SEEDS=200`` runs many).

A failing seed's message names its problems, its last events and the command that replays it alone.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from binance_extractor.kinds import Dataset
from binance_extractor.sinks import open_stores
from binance_extractor.sinks.base import GapRecord
from tests.simulation.run import run_seed
from tests.simulation.world import World

pytestmark = pytest.mark.xdist_group("simulation")


@pytest.mark.parametrize(("seed", "days"), [(0, 30), (1, 5), (2, 5)])
def test_a_seed_ends_with_every_store_equal_to_the_exchange(seed: int, days: int) -> None:
    result = run_seed(seed, days)
    assert result.ok, result.describe()
    assert result.summary["runs"] > 0 and result.summary["tail_closes"] > 0


def _lose_a_candle_and_confirm_one(w: World) -> None:
    """What the checks must catch: a stored candle lost, and a ledger row confirming one the exchange has."""
    store = open_stores(["sqlite"])[0]
    try:
        rows = store.read(Dataset.of_table("klines_h1"), "BTCUSDT")
        victim = rows[len(rows) // 2]["open_time"]
        store.query("DELETE FROM klines_h1 WHERE symbol = ? AND open_time = ?", [
            "BTCUSDT", store.db_time(victim)])  # fmt: skip
        start = rows[len(rows) // 3]["open_time"]
        end = rows[len(rows) // 3 + 1]["open_time"]
        store.record_gap(GapRecord("klines_h1", "ETHUSDT", start, end, "tamper", "rest", 1,
                                   confirmed_at=datetime(2026, 1, 1, tzinfo=UTC)))  # fmt: skip
    finally:
        store.close()


def test_the_checks_catch_a_lost_candle_and_a_wrong_ledger_row() -> None:
    result = run_seed(11, 3, tamper=_lose_a_candle_and_confirm_one)
    assert not result.ok
    text = "\n".join(result.problems)
    assert "klines_h1 BTCUSDT: 1 candle(s) missing" in text, text
    assert "klines_h1 ETHUSDT: the ledger confirms 1 candle(s) the exchange has" in text, text
    assert "python -m tests.simulation run --seed 11 --days 3" in result.describe()
