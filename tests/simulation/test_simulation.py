"""A few seeds of the deterministic simulation in ``make test`` (``make soak SEEDS=200`` runs many).

A failing seed's message names its problems, its last events and the command that replays it alone.
"""

from __future__ import annotations

import contextlib
import sqlite3
from datetime import UTC, datetime

import pytest

from binance_extractor.kinds import Dataset
from binance_extractor.sinks import open_stores
from binance_extractor.sinks.base import GapRecord
from tests.simulation.run import run_seed
from tests.simulation.schedule import DAGS, Scheduler
from tests.simulation.world import HOUR, World

pytestmark = pytest.mark.xdist_group("simulation")


@pytest.mark.parametrize(("seed", "days"), [(0, 30), (1, 5), (3, 5)])  # seed 3 keeps MariaDB beside SQLite
def test_a_seed_ends_with_every_store_equal_to_the_exchange(seed: int, days: int) -> None:
    result = run_seed(seed, days)
    assert result.ok, result.describe()
    assert result.summary["runs"] > 0 and result.summary["tail_closes"] > 0
    assert result.summary["mariadb"] == (seed == 3)  # both stores were checked against the exchange


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


def _counts(w: World) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(w.db_path)) as db:
        names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {n: db.execute(f'SELECT COUNT(*) FROM "{n}"').fetchone()[0] for n in names}


def test_a_task_killed_at_a_commit_leaves_the_database_as_it_was_and_the_next_run_heals() -> None:
    """The simulation's kill fault is real: a DAG task that dies at the commit of its first write transaction
    leaves every table (its audit row included) exactly as before; the next run of the DAG stores what it lost."""
    h1 = next(d for d in DAGS if d.name == "binance_klines_h1")
    with World(5, days=1) as w:
        sched = Scheduler(w)
        tick = (w.start // HOUR + 1) * HOUR
        w.clock.set(tick + 2_000)
        sched.run_dag(h1, tick)  # the first load
        before = _counts(w)
        assert before["klines_h1"] > 0
        w.clock.set(tick + 3 * HOUR + 2_000)
        for _ in w.symbols:  # a task per symbol: each dies at its first commit
            w.reaper.arm(1)
        sched.run_dag(h1, tick + 3 * HOUR)
        assert (w.reaper.kills, sched.stats.failed) == (len(w.symbols), len(w.symbols))
        assert _counts(w) == before  # nothing of the killed task's transaction, no audit row either
        sched.run_dag(h1, tick + 3 * HOUR)  # the retry (no kill armed any more)
        after = _counts(w)
        assert after["klines_h1"] == before["klines_h1"] + 3 * len(w.symbols)
